"""The tools a model may call: `terminal` runs a shell command, `finish` ends the run.

A terminal command runs in a session (and so a process group) of its own, so that
one `killpg` ends it with everything it started in the foreground or with `&`.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

from agent_proc.providers import SECRET_ENV_NAMES

OUTPUT_CAP = 64 * 1024  # bytes of output kept for the model: the first half and the last half

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
    """A terminal command in flight; `kill()` ends its whole process group."""

    def __init__(self, command: str, workspace: str) -> None:
        self.capture = Capture.new()
        self.started = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV_NAMES}
        self.process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=workspace,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def wait(self, timeout: float) -> TerminalResult:
        """Read output until the command exits (or `timeout`), then return the result.

        A command that leaves background jobs holding the pipe is not waited for
        beyond a short drain once bash itself has exited.
        """
        assert self.process.stdout is not None
        deadline = self.started + timeout
        timed_out = False
        drain_until: float | None = None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                if self.process.poll() is not None and drain_until is None:
                    drain_until = now + 0.2
                if drain_until is not None and now >= drain_until:
                    break
                if now >= deadline:
                    timed_out = True
                    self.kill()
                    break
                limit = min(deadline, drain_until or deadline) - now
                if not selector.select(timeout=min(limit, 0.1)):
                    continue
                data = os.read(self.process.stdout.fileno(), 65536)
                if not data:
                    break
                self.capture.add(data)
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
