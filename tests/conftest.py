"""Shared fixtures: an isolated $AGENT_HOME, the scripted LLM server, and a way to run
the real `agent` command line in a subprocess.

Every test checks at teardown that no process it started through `agent` is left
alive: a leak fails the test that caused it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent_proc import conversation
from agent_proc.conversation import State
from supervisor.scripted_server import ScriptedServer, start_server

REPO = Path(__file__).resolve().parent.parent
FAULTS = Path(__file__).resolve().parent / "faults"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll until `predicate()` is truthy; return its value, or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


@dataclass
class Agent:
    """Runs the real CLI (`python -m supervisor`, the same code as `agent`) against one home."""

    home: Path
    workspace: Path
    env: dict[str, str]
    transcript: list[str] = field(default_factory=list)  # everything the CLI printed, for secret checks

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "supervisor", *args]

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.command(*args), input=input, capture_output=True, text=True, timeout=timeout,
                                env={**self.env, **(env or {})}, cwd=self.workspace)
        self.transcript += [result.stdout, result.stderr]
        return result

    def popen(self, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**self.env, **(env or {})}, cwd=self.workspace, **kwargs)

    def start(self, server: ScriptedServer, prompt: str = "solve the task", *extra: str,
              env: dict[str, str] | None = None) -> str:
        """`agent run -d` against the server; returns the conversation id."""
        result = self("run", "-d", "-m", "openai/scripted", "--base-url", server.url, prompt, *extra, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def foreground(self, server: ScriptedServer, *extra: str,
                   env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
        """A foreground `agent run` against the server, returned once the model's text is
        streaming: the CLI process and the conversation id."""
        cli = self.popen("run", "-m", "openai/scripted", "--base-url", server.url, *extra, "task", env=env)
        conv_id = wait_until(lambda: self("ps", "-q").stdout.strip())
        wait_until(lambda: "think" in self.output(conv_id))
        return cli, conv_id

    def dir(self, conv_id: str) -> Path:
        return conversation.resolve(conv_id, self.home)

    def state(self, conv_id: str) -> State:
        return conversation.load_state(self.dir(conv_id))

    def events(self, conv_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        events, _ = conversation.read_events(self.dir(conv_id))
        return [e for e in events if kind is None or e["type"] == kind]

    def output(self, conv_id: str) -> str:
        return (self.dir(conv_id) / conversation.OUTPUT_FILE).read_text(errors="replace")

    def child(self, conv_id: str) -> psutil.Process:
        runtime = self.state(conv_id).runtime
        process = psutil.Process(runtime.pid)
        assert abs(process.create_time() - (runtime.create_time or 0)) < 0.05
        return process

    def our_processes(self) -> list[psutil.Process]:
        """Live processes started for this home (the children carry AGENT_HOME and a marker)."""
        found = []
        for process in psutil.process_iter():
            try:
                env = process.environ()
                if env.get("AGENT_HOME") == str(self.home) and "AGENT_RUN_MARKER" in env \
                        and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except psutil.Error:
                continue
        return found


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LLM_", "AGENT_")) and k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    env["AGENT_HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    from tests.sandboxes import sandbox_problem

    if sandbox_problem() and os.environ.get("CI") != "true":
        # No sandbox on this machine: the tests of everything else still run, unconfined
        # (test_sandbox.py is skipped and says why; under CI it fails instead).
        env["AGENT_SANDBOX"] = "off"
    return env


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Agent]:
    home = tmp_path / "home"
    workspace = tmp_path / "ws"
    workspace.mkdir()
    monkeypatch.setenv("AGENT_HOME", str(home))
    runner = Agent(home, workspace, clean_env(home))
    yield runner
    leftovers = runner.our_processes()
    for process in leftovers:
        process.kill()
    assert not leftovers, f"processes left behind: {[(p.pid, p.cmdline()) for p in leftovers]}"


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    """`serve(step, step, ...)` starts a scripted server on 127.0.0.1 for the test.

    Every request is checked the way the real API checks it; a test fails at teardown
    if any was refused, unless it started the server with `refusals_expected=True`.
    """
    servers: list[tuple[ScriptedServer, bool]] = []

    def start(*steps: dict[str, Any], when_exhausted: str = "error", refusals_expected: bool = False) -> ScriptedServer:
        server = start_server({"steps": list(steps), "when_exhausted": when_exhausted})
        servers.append((server, refusals_expected))
        return server

    yield start
    for server, _ in servers:
        server.stop()
    refused = [problems for server, expected in servers if not expected for problems in server.rejections()]
    assert not refused, f"requests a strict API would refuse: {refused}"


def finish(message: str = "all done") -> dict[str, Any]:
    return {"tool_calls": [{"name": "finish", "arguments": {"message": message}}]}


def terminal(command: str, content: str = "", **step: Any) -> dict[str, Any]:
    return {"content": content, "tool_calls": [{"name": "terminal", "arguments": {"command": command}}], **step}


def slow_text(text: str = "Let me think about this carefully. " * 40, seconds: float = 20.0,
              **step: Any) -> dict[str, Any]:
    """A step that streams `text` over about `seconds`, in 8-character chunks."""
    chunks = max(1, len(text) // 8)
    return {"content": text, "chunk_chars": 8, "chunk_delay": seconds / chunks, **step}


def fault_env(**faults: str) -> dict[str, str]:
    """Environment that loads tests/faults/sitecustomize.py into the run's child process."""
    env = {"PYTHONPATH": f"{FAULTS}{os.pathsep}{REPO}"}
    env.update({f"AGENT_FAULT_{k.upper()}": v for k, v in faults.items()})
    return env


def dump(agent: Agent, conv_id: str) -> str:
    """Everything about a conversation, for assertion messages."""
    return json.dumps(agent.events(conv_id), indent=1)[-4000:] + "\n" + agent.output(conv_id)[-2000:]


def agent_on_path(directory: Path) -> str:
    """A PATH whose `agent` is this checkout's CLI, as an installed `agent` would be,
    for tests that run shell scripts (recipes, completion)."""
    directory.mkdir(parents=True, exist_ok=True)
    command = directory / "agent"
    command.write_text(f"#!/bin/sh\nexec {sys.executable} -m supervisor \"$@\"\n")
    command.chmod(0o755)
    return f"{directory}{os.pathsep}/usr/local/bin:/usr/bin:/bin"
