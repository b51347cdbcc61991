"""The terminal tool with real bash processes, in a real sandbox and with --sandbox off:
exit codes, timeouts, caps, odd bytes."""

from __future__ import annotations

import psutil
import pytest

from agent_proc.conversation import Settings
from agent_proc.tools import OUTPUT_CAP, RunningCommand, describe_result
from tests.conftest import finish, terminal, wait_until
from tests.sandboxes import require_sandbox

MODES = ["workspace", "off"]


def run(command: str, tmp_path, timeout: float = 10.0, sandbox: str = "off"):
    if sandbox != "off":
        require_sandbox()
    return RunningCommand(command, str(tmp_path), Settings(sandbox=sandbox)).wait(timeout)


def no_process_named(cmdline: list[str]) -> bool:
    return not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == cmdline]


@pytest.mark.parametrize("sandbox", MODES)
def test_exit_code_and_combined_output(tmp_path, sandbox):
    result = run("echo out; echo err >&2; exit 3", tmp_path, sandbox=sandbox)
    assert result.exit_code == 3 and not result.timed_out
    assert result.output == "out\nerr\n"
    assert describe_result(result).startswith("[exit code 3]")


@pytest.mark.parametrize("sandbox", MODES)
def test_runs_in_the_workspace(tmp_path, sandbox):
    assert run("pwd", tmp_path, sandbox=sandbox).output.strip() == str(tmp_path)


@pytest.mark.parametrize("sandbox", MODES)
def test_timeout_kills_the_whole_group(tmp_path, sandbox):
    result = run("sleep 297 & sleep 297; echo never", tmp_path, timeout=0.5, sandbox=sandbox)
    assert result.timed_out and result.exit_code is None and "never" not in result.output
    assert "timed out" in describe_result(result)
    wait_until(lambda: no_process_named(["sleep", "297"]), timeout=3)  # (a number no other test uses)


@pytest.mark.parametrize("sandbox", MODES)
@pytest.mark.parametrize("command", ["exec >out.log 2>&1; sleep 43", "exec >&- 2>&-; sleep 44",
                                     "echo started; exec >&- 2>&-; sleep 46"])
def test_timeout_holds_when_the_command_lets_go_of_its_output(tmp_path, sandbox, command):
    """Closing or redirecting stdout and stderr ends the output, not the command: the
    deadline still holds, and the command is killed and recorded as timed out."""
    result = run(command, tmp_path, timeout=1.0, sandbox=sandbox)
    assert result.timed_out and result.exit_code is None, result
    assert result.duration_ms < 5000
    wait_until(lambda: no_process_named(["sleep", command.split()[-1]]), timeout=3)


@pytest.mark.parametrize("sandbox", MODES)
def test_a_command_that_closes_its_output_and_exits_is_complete(tmp_path, sandbox):
    result = run("echo before; exec >&- 2>&-; sleep 0.3; exit 5", tmp_path, sandbox=sandbox)
    assert result.exit_code == 5 and not result.timed_out and result.output == "before\n"


@pytest.mark.parametrize("sandbox", MODES)
def test_large_output_is_capped_head_and_tail(tmp_path, sandbox):
    result = run("seq 1 2000000", tmp_path, sandbox=sandbox)
    assert result.truncated
    assert result.output.startswith("1\n2\n3\n") and result.output.rstrip().endswith("2000000")
    assert "bytes of output omitted" in result.output
    assert len(result.output.encode()) < OUTPUT_CAP + 200


@pytest.mark.parametrize("sandbox", MODES)
def test_non_utf8_output_is_replaced_not_fatal(tmp_path, sandbox):
    result = run(r"printf 'ok \xff\xfe bytes\n'", tmp_path, sandbox=sandbox)
    assert result.exit_code == 0 and result.output == "ok \ufffd\ufffd bytes\n"


def test_background_job_does_not_hold_the_call(tmp_path):
    result = run("sleep 30 & echo started", tmp_path, timeout=5)
    assert result.exit_code == 0 and result.output == "started\n" and result.duration_ms < 3000
    for p in psutil.process_iter(["cmdline"]):
        if p.info["cmdline"] == ["sleep", "30"]:
            p.kill()


def test_in_a_sandbox_background_jobs_end_with_the_command(tmp_path):
    """The command's PID namespace ends with its shell: a job left in the background,
    even one that left the session and ignores signals, goes with it."""
    result = run("sleep 31 & setsid sh -c 'trap \"\" INT TERM HUP; sleep 32' & echo started", tmp_path,
                 timeout=5, sandbox="workspace")
    assert result.exit_code == 0 and result.output == "started\n" and result.duration_ms < 3000
    wait_until(lambda: no_process_named(["sleep", "31"]) and no_process_named(["sleep", "32"]), timeout=3)


def test_tool_timeout_flag_reaches_the_run(agent, serve):
    server = serve(terminal("sleep 30"), finish())
    result = agent("run", "--tool-timeout", "0.5", "-m", "openai/scripted", "--base-url", server.url, "hi")
    assert result.returncode == 0, result.stderr
    tool_message = [m for m in server.requests()[1]["messages"] if m["role"] == "tool"][0]
    assert "timed out" in tool_message["content"]


@pytest.mark.parametrize("sandbox", MODES)
def test_tool_timeout_holds_in_a_run_when_the_command_closes_its_output(agent, serve, sandbox):
    if sandbox != "off":
        require_sandbox()
    server = serve(terminal("exec >out.log 2>&1; sleep 20"), finish())
    result = agent("run", "--tool-timeout", "1", "--sandbox", sandbox, "-m", "openai/scripted",
                   "--base-url", server.url, "hi")
    assert result.returncode == 0, result.stderr
    conv_id = agent("ps", "-a", "-q").stdout.strip()
    tool_result = agent.events(conv_id, "tool_result")[0]
    assert tool_result["outcome"] == "timeout" and tool_result["duration_ms"] < 5000, tool_result


def test_huge_tool_output_in_a_run(agent, serve):
    server = serve(terminal("head -c 50000000 /dev/zero | tr '\\0' 'x'"), finish())
    result = agent("run", "-m", "openai/scripted", "--base-url", server.url, "hi")
    assert result.returncode == 0, result.stderr
    conv_id = agent("ps", "-a", "-q").stdout.strip()
    assert agent.events(conv_id, "tool_result")[0]["truncated"]
    assert (agent.dir(conv_id) / "events.jsonl").stat().st_size < 1_000_000


def test_exit_codes_survive_the_reaping_of_orphans(agent, serve):
    """The child reaps adopted orphans on SIGCHLD; it must never take a tool's own status."""
    server = serve(*[terminal(f"(sleep 0.01 &); exit {code}") for code in (7, 0, 3, 1, 42)], finish())
    result = agent("run", "--sandbox", "off", "-m", "openai/scripted", "--base-url", server.url, "hi")
    assert result.returncode == 0, result.stderr
    conv_id = agent("ps", "-a", "-q").stdout.strip()
    results = [e for e in agent.events(conv_id, "tool_result") if e["name"] == "terminal"]
    assert [e["exit_code"] for e in results] == [7, 0, 3, 1, 42]
