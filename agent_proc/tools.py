"""The tools a model may call: `terminal` runs a shell command, `finish` ends the run.

A terminal command runs in a sandbox of its own (agent_proc/sandbox.py) unless the
run's `--sandbox` is `off`, and in a session (and so a process group) of its own, so
that one `killpg` ends it. Its environment never holds an API key variable.

`--tool-timeout` holds whatever the command does with its output: one that closes or
redirects its stdout and stderr (`exec >out.log 2>&1; sleep 600`) is still waited for
only until the deadline, then killed.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

from agent_proc import sandbox
from agent_proc.conversation import Settings
from agent_proc.providers import SECRET_ENV_NAMES

OUTPUT_CAP = 64 * 1024  # bytes of output kept for the model: the first half and the last half
DRAIN = 0.2  # seconds to read what is left once the command's shell has exited

TOOL_SPECS = [
    {
        "type": "function",
        "function": {
            "name": "terminal",
            "description": "Run a shell command with bash in the workspace and return its exit code and output "
                           "(stdout and stderr together). Long output is cut in the middle.",
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string", "description": "The command line to run."}},
                "required": ["command"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "finish",
            "description": "End the task and give the final answer to the user.",
            "parameters": {
                "type": "object",
                "properties": {"message": {"type": "string", "description": "The final answer."}},
                "required": ["message"],
            },
        },
    },
]


@dataclass
class Capture:
    """Output of a command as it runs: head and tail kept, the middle counted."""

    head: bytearray
    tail: bytearray
    total: int = 0

    @classmethod
    def new(cls) -> Capture:
        return cls(bytearray(), bytearray())

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = OUTPUT_CAP // 2 - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            del self.tail[: max(0, len(self.tail) - OUTPUT_CAP // 2)]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        # Bytes that are not UTF-8 become U+FFFD instead of failing the run.
        head = self.head.decode("utf-8", errors="replace")
        if not self.truncated:
            return head + self.tail.decode("utf-8", errors="replace")
        omitted = self.total - len(self.head) - len(self.tail)
        return f"{head}\n[... {omitted} bytes of output omitted ...]\n" + self.tail.decode("utf-8", errors="replace")


@dataclass
class TerminalResult:
    exit_code: int | None
    output: str
    truncated: bool
    timed_out: bool
    duration_ms: float


class RunningCommand:
    """A terminal command in flight; `kill()` ends it and everything it started."""

    def __init__(self, command: str, workspace: str, settings: Settings) -> None:
        self.capture = Capture.new()
        self.started = time.monotonic()
        argv = ["bash", "-c", command]
        if settings.sandbox != "off":
            bwrap = sandbox.find_bwrap()
            if bwrap is None:  # the supervisor checked before starting; something changed since
                raise sandbox.SandboxUnavailable("no bwrap found to sandbox the command")
            argv = sandbox.command_argv(argv, sandbox.Policy.of(settings, workspace), bwrap)
        env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV_NAMES}
        self.process = subprocess.Popen(
            argv,
            cwd=workspace,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL to the command's process group. In a sandbox, bwrap's death ends its
        PID namespace, and so every process in it, wherever it went."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def wait(self, timeout: float) -> TerminalResult:
        """Read output until the command exits (or `timeout`), then return the result.

        The end of the output is not the end of the command: one that closed its
        stdout keeps its deadline. Background jobs left holding the pipe once the
        command's shell has exited (possible only outside a sandbox, where they
        outlive it) are not waited for beyond a short drain.
        """
        assert self.process.stdout is not None
        deadline = self.started + timeout
        timed_out = False
        output_open = True
        drain_until: float | None = None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                if self.process.poll() is not None:
                    if not output_open:
                        break
                    drain_until = drain_until or now + DRAIN
                    if now >= drain_until:
                        break
                if now >= deadline:
                    timed_out = True
                    self.kill()
                    break
                limit = min(deadline, drain_until or deadline) - now
                if not output_open:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.process.wait(min(limit, 0.1))
                    continue
                if not selector.select(timeout=min(limit, 0.1)):
                    continue
                data = os.read(self.process.stdout.fileno(), 65536)
                if data:
                    self.capture.add(data)
                else:
                    output_open = False
                    selector.unregister(self.process.stdout)
        self.process.stdout.close()
        exit_code = self.process.wait()
        return TerminalResult(
            exit_code=None if timed_out else exit_code,
            output=self.capture.text(),
            truncated=self.capture.truncated,
            timed_out=timed_out,
            duration_ms=round((time.monotonic() - self.started) * 1000, 1),
        )


def describe_result(result: TerminalResult) -> str:
    """The text the model is given for a terminal result."""
    if result.timed_out:
        status = f"timed out after {result.duration_ms / 1000:.0f} s and was killed"
    else:
        status = f"exit code {result.exit_code}"
    return f"[{status}]\n{result.output}"
