"""`agent interrupt`, Ctrl+C and the escalation to SIGKILL, with real processes and signals."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import time

import psutil
import pytest

from agent_proc.conversation import transaction
from agent_proc.environment import process_start_ticks
from agent_proc.status import Status
from tests.conftest import dump, fault_env, finish, slow_text, terminal, wait_until


def streaming(agent, conv_id: str) -> bool:
    """True once the child has printed some streamed model text."""
    return "think" in agent.output(conv_id)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_interrupt_during_model_call_abandons_it_and_pauses(agent, serve, provider):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server, "task", "-m", f"{provider}/scripted")
    wait_until(lambda: streaming(agent, conv_id))
    child = agent.child(conv_id)

    result = agent("interrupt", conv_id)

    assert result.returncode == 0, result.stderr
    assert "stopped in" in result.stdout and "ms" in result.stdout
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    # The connection was closed under the server while it was still streaming.
    assert server.wait_for("client_disconnected", timeout=5), server.events()
    assert not [e for e in server.events() if e["event"] == "response_done"]
    state = agent.state(conv_id)
    assert state.status.value == "paused"
    assert state.runtime.stop and state.runtime.stop["method"] == "sigint"
    interrupted = agent.events(conv_id, "interrupted")
    assert interrupted and interrupted[0]["during"] == "model_call" and interrupted[0]["signal"] == "SIGINT"
    partial = agent.events(conv_id, "model_message")[-1]
    assert partial["partial"] and partial["outcome"] == "interrupted"
    assert partial["content"].startswith("Let me think"), dump(agent, conv_id)
    assert agent("wait", conv_id).returncode == 130


def test_interrupt_during_terminal_ends_every_process_of_the_tool(agent, serve):
    server = serve(terminal("sleep 600 & sleep 600"))
    conv_id = agent.start(server)
    child = wait_until(lambda: agent.events(conv_id, "model_message") and agent.child(conv_id))
    sleeps = wait_until(lambda: [p for p in child.children(recursive=True) if p.name() == "sleep"][1:] and
                        [p for p in child.children(recursive=True) if p.name() == "sleep"])
    assert len(sleeps) == 2

    result = agent("interrupt", conv_id)

    assert result.returncode == 0, result.stderr
    gone, alive = psutil.wait_procs([child, *sleeps], timeout=2)
    assert not alive, f"survivors: {alive}"
    result_event = agent.events(conv_id, "tool_result")[-1]
    assert result_event["outcome"] == "interrupted"
    assert agent.events(conv_id, "interrupted")[0]["during"] == "tool"
    assert agent.state(conv_id).status.value == "paused"


def test_child_that_ignores_sigint_is_killed_within_grace_and_still_paused(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server, env=fault_env(ignore="SIGINT,SIGTERM"))
    wait_until(lambda: streaming(agent, conv_id))
    child = agent.child(conv_id)

    began = time.monotonic()
    result = agent("interrupt", conv_id, "--grace", "1", "--json")
    took = time.monotonic() - began

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["stop"]
    assert report["duration_ms"] < (1 + 1) * 1000, report  # within grace + 1 s of the command taking over
    assert took < 1 + 2, f"the whole command took {took:.2f} s"
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    state = agent.state(conv_id)
    assert state.status.value == "paused"
    assert state.runtime.stop["method"] == "sigkill"
    assert state.runtime.stop["signals"] == ["SIGINT", "SIGTERM", "SIGKILL"]
    assert report["signals"] == ["SIGINT", "SIGTERM", "SIGKILL"]
    assert state.status_kind == "interrupt"
    assert agent.events(conv_id, "interrupted")[0]["during"] == "model_call"  # recorded by the interrupter


def test_interrupt_of_a_finished_run_changes_nothing(agent, serve):
    server = serve(finish("42"))
    conv_id = agent.start(server)
    assert agent("wait", conv_id).returncode == 0
    before = agent.events(conv_id)

    result = agent("interrupt", conv_id)

    assert result.returncode == 0
    assert "not running (finished)" in result.stderr
    assert agent.events(conv_id) == before


def test_second_interrupt_says_so(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: streaming(agent, conv_id))
    assert agent("interrupt", conv_id).returncode == 0
    events = agent.events(conv_id)

    again = agent("interrupt", conv_id, "--json")

    assert again.returncode == 0
    assert '"already_stopped": true' in again.stdout
    assert agent.events(conv_id) == events


def test_interrupt_of_unknown_id_is_a_clear_error(agent):
    for bad in ("abcdef", "../etc", "ZZZ"):
        result = agent("interrupt", bad)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("forged", [
    # The pid was reused: the start time differs.
    lambda p: {"create_time": p.create_time() - 100, "marker": "m"},
    # Right start time, but not our marker in its environment.
    lambda p: {"create_time": p.create_time(), "marker": "not-its-marker"},
    # No marker to go by: the start ticks alone decide, exactly (the create time is right).
    lambda p: {"create_time": p.create_time(), "start_ticks": process_start_ticks(p.pid) + 1, "marker": None},
], ids=["wrong-start-time", "no-marker", "wrong-start-ticks"])
def test_a_recorded_pid_that_is_not_ours_is_never_signalled(agent, serve, forged):
    server = serve(finish())
    conv_id = agent.start(server)
    assert agent("wait", conv_id).returncode == 0
    bystander = psutil.Popen(["sleep", "60"])
    try:
        # Make the record claim the run is still going, in an unrelated process.
        with transaction(agent.dir(conv_id)) as txn:
            txn.set_status(Status.STARTING, "forged by the test", token="t", starter={})
            txn.set_status(Status.RUNNING, "forged by the test")
            txn.record("started", pid=bystander.pid, **forged(bystander))

        assert agent("interrupt", conv_id).returncode == 0
        assert agent("ps", "-a").returncode == 0

        assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE
        state = agent.state(conv_id)
        assert state.status.value == "error" and "gone" in state.status_reason
    finally:
        bystander.kill()
        bystander.wait()


def test_sigint_to_foreground_run_pauses_it_with_exit_130(agent, serve):
    server = serve(slow_text(seconds=30))
    cli, conv_id = agent.foreground(server)
    child = agent.child(conv_id)

    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=10)

    assert cli.returncode == 130, err
    assert "Traceback" not in err
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert agent.state(conv_id).status.value == "paused"
    assert agent.events(conv_id, "model_message")[-1]["partial"]


def test_sigterm_to_foreground_run_pauses_it_with_exit_143(agent, serve):
    server = serve(slow_text(seconds=30))
    cli, conv_id = agent.foreground(server)

    cli.send_signal(signal.SIGTERM)
    cli.communicate(timeout=10)

    assert cli.returncode == 143
    assert agent.state(conv_id).status.value == "paused"


def test_second_ctrl_c_kills_at_once(agent, serve):
    server = serve(slow_text(seconds=30))
    cli, conv_id = agent.foreground(server, "--grace", "20", env=fault_env(ignore="SIGINT,SIGTERM"))
    child = agent.child(conv_id)

    cli.send_signal(signal.SIGINT)
    time.sleep(0.3)
    began = time.monotonic()
    cli.send_signal(signal.SIGINT)
    cli.communicate(timeout=10)

    assert time.monotonic() - began < 3
    assert cli.returncode == 130
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert agent.state(conv_id).runtime.stop["method"] == "sigkill"


@pytest.mark.skipif(not hasattr(pty, "fork"), reason="needs a pty")
def test_ctrl_c_typed_at_a_terminal(agent, serve):
    """Ctrl+C at a real terminal reaches only the CLI, which stops the run cleanly."""
    server = serve(slow_text(seconds=30))
    pid, fd = pty.fork()
    if pid == 0:  # the CLI, with the pty as its controlling terminal
        os.chdir(agent.workspace)
        os.execve(agent.command("run", "-m", "openai/scripted", "--base-url", server.url, "task")[0],
                  agent.command("run", "-m", "openai/scripted", "--base-url", server.url, "task"), agent.env)
    try:
        conv_id = wait_until(lambda: agent("ps", "-q").stdout.strip())
        wait_until(lambda: streaming(agent, conv_id))
        os.write(fd, b"\x03")
        _, status = os.waitpid(pid, 0)
        screen = b""
        while select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 130, screen.decode(errors="replace")
    assert b"Traceback" not in screen
    assert agent.state(conv_id).status.value == "paused"

