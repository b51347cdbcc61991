"""The terminal tool with real bash processes: exit codes, timeouts, caps, odd bytes."""

from __future__ import annotations

import psutil

from agent_proc.tools import OUTPUT_CAP, RunningCommand, describe_result
from tests.conftest import finish, terminal, wait_until


def run(command: str, tmp_path, timeout: float = 10.0):
    return RunningCommand(command, str(tmp_path)).wait(timeout)


def test_exit_code_and_combined_output(tmp_path):
    result = run("echo out; echo err >&2; exit 3", tmp_path)
    assert result.exit_code == 3 and not result.timed_out
    assert result.output == "out\nerr\n"
    assert describe_result(result).startswith("[exit code 3]")


def test_runs_in_the_workspace(tmp_path):
    assert run("pwd", tmp_path).output.strip() == str(tmp_path)


def test_timeout_kills_the_whole_group(tmp_path):
    result = run("sleep 300 & sleep 300; echo never", tmp_path, timeout=0.5)
    assert result.timed_out and result.exit_code is None and "never" not in result.output
    assert "timed out" in describe_result(result)
    wait_until(lambda: not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "300"]],
               timeout=3)


def test_large_output_is_capped_head_and_tail(tmp_path):
    result = run("seq 1 2000000", tmp_path)
    assert result.truncated
    assert result.output.startswith("1\n2\n3\n") and result.output.rstrip().endswith("2000000")
    assert "bytes of output omitted" in result.output
    assert len(result.output.encode()) < OUTPUT_CAP + 200


def test_non_utf8_output_is_replaced_not_fatal(tmp_path):
    result = run(r"printf 'ok \xff\xfe bytes\n'", tmp_path)
    assert result.exit_code == 0 and result.output == "ok \ufffd\ufffd bytes\n"


def test_background_job_does_not_hold_the_call(tmp_path):
    result = run("sleep 30 & echo started", tmp_path, timeout=5)
    assert result.exit_code == 0 and result.output == "started\n" and result.duration_ms < 3000
    for p in psutil.process_iter(["cmdline"]):
        if p.info["cmdline"] == ["sleep", "30"]:
            p.kill()


def test_tool_timeout_flag_reaches_the_run(agent, serve):
    server = serve(terminal("sleep 30"), finish())
    result = agent("run", "--tool-timeout", "0.5", "-m", "openai/scripted", "--base-url", server.url, "hi")
    assert result.returncode == 0, result.stderr
    tool_message = [m for m in server.requests()[1]["messages"] if m["role"] == "tool"][0]
    assert "timed out" in tool_message["content"]


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
    result = agent("run", "-m", "openai/scripted", "--base-url", server.url, "hi")
    assert result.returncode == 0, result.stderr
    conv_id = agent("ps", "-a", "-q").stdout.strip()
    results = [e for e in agent.events(conv_id, "tool_result") if e["name"] == "terminal"]
    assert [e["exit_code"] for e in results] == [7, 0, 3, 1, 42]
