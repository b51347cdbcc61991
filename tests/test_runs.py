"""Runs from start to end: tools, finish, pause, resume, send, and what reaches the model."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import time

import psutil
import pytest

from tests.conftest import dump, finish, slow_text, terminal, wait_until


def test_foreground_run_with_tool_calls_finishes(agent, serve):
    server = serve(terminal("echo hello > out.txt && cat out.txt", content="Writing the file."),
                   finish("wrote out.txt"))

    result = agent("run", "-m", "openai/scripted", "--base-url", server.url, "write hello to out.txt")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "wrote out.txt\n"
    assert (agent.workspace / "out.txt").read_text() == "hello\n"
    assert "[terminal] $ echo hello > out.txt" in result.stderr  # progress on stderr
    assert "Writing the file." in result.stderr
    # The second request carried the tool's result back to the model.
    second = server.requests()[1]["messages"]
    assert second[-1]["role"] == "tool" and "hello" in second[-1]["content"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "terminal"
    conv_id = agent("ps", "-a", "-q").stdout.strip()
    kinds = [e["type"] for e in agent.events(conv_id)]
    assert kinds == ["created", "user_message", "status", "status", "started", "model_call_started", "model_message",
                     "tool_result", "model_call_started", "model_message", "tool_result", "status", "exited"]
    state = agent.state(conv_id)
    assert state.status.value == "finished" and state.final_answer == "wrote out.txt"
    assert state.metrics.model_calls == 2 and state.metrics.tool_calls == 2


def test_answer_without_tool_call_finishes_and_json_output(agent, serve):
    server = serve({"content": "The answer is 4."})

    result = agent("run", "--json", "-q", "-m", "openai/scripted", "--base-url", server.url, "2+2?")

    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "finished" and doc["final_answer"] == "The answer is 4."
    assert result.stderr == ""


def test_prompt_from_stdin(agent, serve):
    server = serve(finish())
    result = agent("run", "-q", "-m", "openai/scripted", "--base-url", server.url, "-", input="from stdin\n")
    assert result.returncode == 0, result.stderr
    assert server.requests()[0]["messages"][-1]["content"] == "from stdin\n"


def test_max_iterations_fails_the_run(agent, serve):
    server = serve(terminal("true"), when_exhausted="repeat_last")
    result = agent("run", "--max-iterations", "3", "-m", "openai/scripted", "--base-url", server.url, "loop")
    assert result.returncode == 1
    conv_id = agent("ps", "-a", "-q").stdout.strip()
    state = agent.state(conv_id)
    assert state.status.value == "error" and "--max-iterations (3)" in state.status_reason
    assert len(server.requests()) == 3


def test_model_api_error_fails_the_run_clearly(agent, serve):
    server = serve({"status": 400, "error": "bad request: no such model"})
    result = agent("run", "-m", "openai/scripted", "--base-url", server.url, "hi")
    assert result.returncode == 1
    assert "no such model" in result.stderr
    assert "Traceback" not in result.stderr


def test_rate_limit_is_retried_after_retry_after(agent, serve):
    server = serve({"status": 429, "error": "slow down", "headers": {"Retry-After": "1"}}, finish("ok"))
    began = time.monotonic()
    result = agent("run", "-m", "openai/scripted", "--base-url", server.url, "hi")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - began >= 1.0
    conv_id = agent("ps", "-a", "-q").stdout.strip()
    assert agent.events(conv_id, "model_attempt_failed")[0]["status"] == 429


def test_dropped_connection_is_retried(agent, serve):
    server = serve({"drop": True}, finish("ok"))
    result = agent("run", "-m", "openai/scripted", "--base-url", server.url, "hi")
    assert result.returncode == 0, result.stderr


def test_invalid_tool_arguments_go_back_to_the_model(agent, serve):
    server = serve({"tool_calls": [{"name": "terminal", "arguments": {"cmd": "ls"}}]},
                   {"tool_calls": [{"name": "nope", "arguments": {}}]}, finish())
    result = agent("run", "-m", "openai/scripted", "--base-url", server.url, "hi")
    assert result.returncode == 0, result.stderr
    contents = [m["content"] for m in server.requests()[2]["messages"] if m["role"] == "tool"]
    assert "needs a string argument 'command'" in contents[0]
    assert "unknown tool 'nope'" in contents[1]


def test_pause_lets_the_current_call_finish(agent, serve):
    server = serve(slow_text(seconds=2, tool_calls=[{"name": "terminal", "arguments": {"command": "touch ran"}}]),
                   finish("resumed and done"))
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))

    result = agent("pause", conv_id)

    assert result.returncode == 0, result.stderr
    state = agent.state(conv_id)
    assert state.status.value == "paused" and state.status_reason == "pause requested"
    message = agent.events(conv_id, "model_message")[-1]
    assert not message["partial"] and message["content"] == slow_text()["content"]
    assert server.wait_for("response_done")
    assert not (agent.workspace / "ran").exists()
    assert agent.events(conv_id, "tool_result")[-1]["outcome"] == "skipped"
    assert agent("wait", conv_id).returncode == 130

    resumed = agent("resume", conv_id)

    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "resumed and done\n"


def test_resume_after_interrupt_finishes_and_drops_partial_output(agent, serve):
    server = serve(slow_text(seconds=30), finish("finished after resume"))
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))
    assert agent("interrupt", conv_id).returncode == 0

    resumed = agent("resume", conv_id)

    assert resumed.returncode == 0, resumed.stderr + dump(agent, conv_id)
    assert resumed.stdout == "finished after resume\n"
    # The half-streamed text was not sent back as if the model had said it.
    roles = [m["role"] for m in server.requests()[1]["messages"]]
    assert roles == ["system", "user"]
    assert agent.state(conv_id).status.value == "finished"


def test_resume_after_interrupted_tool_gives_the_call_a_result(agent, serve):
    server = serve(terminal("sleep 600"), finish("ok"))
    conv_id = agent.start(server)
    wait_until(lambda: "sleep 600" in agent.output(conv_id))
    time.sleep(0.2)
    assert agent("interrupt", conv_id).returncode == 0

    assert agent("resume", conv_id).returncode == 0
    tool_messages = [m for m in server.requests()[1]["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 1 and "interrupted" in tool_messages[0]["content"]


def test_send_to_a_running_run_is_taken_in_before_the_next_call(agent, serve):
    server = serve(slow_text(seconds=1.5, tool_calls=[{"name": "terminal", "arguments": {"command": "true"}}]),
                   finish())
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))

    sent = agent("send", conv_id, "also mention the weather")

    assert sent.returncode == 0 and "queued" in sent.stderr
    assert agent("wait", conv_id).returncode == 0
    last = server.requests()[1]["messages"][-1]
    assert last == {"role": "user", "content": "also mention the weather"}
    assert [e["content"] for e in agent.events(conv_id, "user_message")][-1] == "also mention the weather"


def test_send_to_a_paused_run_is_kept_for_resume(agent, serve):
    server = serve(slow_text(seconds=30), finish())
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))
    agent("interrupt", conv_id)

    sent = agent("send", conv_id, "-", input="try a different approach")

    assert "stored" in sent.stderr
    assert agent("resume", conv_id).returncode == 0
    assert server.requests()[1]["messages"][-1]["content"] == "try a different approach"


def test_resume_of_a_finished_run_needs_a_new_message(agent, serve):
    server = serve(finish("one"), finish("two"))
    conv_id = agent.start(server)
    assert agent("wait", conv_id).returncode == 0
    refused = agent("resume", conv_id)
    assert refused.returncode == 2 and "agent send" in refused.stderr
    agent("send", conv_id, "and again")
    assert agent("resume", conv_id).stdout == "two\n"


def test_killed_child_is_reconciled_by_the_next_command(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))
    child = agent.child(conv_id)
    child.kill()
    child.wait(5)

    listing = agent("ps")

    assert conv_id not in listing.stdout
    state = agent.state(conv_id)
    assert state.status.value == "error" and "gone" in state.status_reason
    assert agent("wait", conv_id).returncode == 1
    assert agent.events(conv_id, "reconciled")


def test_sigkill_at_random_moments_leaves_readable_consistent_state(agent, serve):
    """Kill the child at random points of a busy run: every file parses, the state
    agrees with the history, and the conversation can be resumed."""
    rng = random.Random(1234)
    for attempt in range(12):
        server = serve(*[terminal(f"echo step {i}") for i in range(40)], finish())
        conv_id = agent.start(server)
        time.sleep(rng.uniform(0.0, 0.6))
        with contextlib.suppress(psutil.NoSuchProcess, AssertionError):  # it may have finished first
            agent.child(conv_id).send_signal(signal.SIGKILL)
        shown = agent("show", "--json", conv_id)
        assert shown.returncode == 0, shown.stderr
        doc = json.loads(shown.stdout)
        seqs = [e["seq"] for e in doc["events"]]
        assert seqs == list(range(1, len(seqs) + 1)), f"attempt {attempt}"
        assert doc["state"]["events_seq"] == seqs[-1]
        assert doc["state"]["status"] in ("error", "finished")
        # Every line on disk but possibly a torn last one parses.
        lines = (agent.dir(conv_id) / "events.jsonl").read_bytes().split(b"\n")
        for line in lines[:-1]:
            json.loads(line)
        json.loads((agent.dir(conv_id) / "state.json").read_bytes())


@pytest.mark.parametrize(("model", "variable"), [("openai/scripted", "LLM_API_KEY"),
                                                ("anthropic/scripted", "ANTHROPIC_API_KEY")])
def test_api_key_never_reaches_disk(agent, serve, model, variable):
    key = "sk-test-" + "S3CR3T" * 6
    server = serve({**terminal("echo key=$LLM_API_KEY $ANTHROPIC_API_KEY"), "expect_api_key": key},
                   {**finish(), "expect_api_key": key})
    env = {variable: key}
    result = agent("run", "-m", model, "--base-url", server.url, "hi", env=env)
    assert result.returncode == 0, result.stderr
    conv_id = agent("ps", "-a", "-q").stdout.strip()
    agent("show", conv_id)
    for path in agent.home.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    assert key not in result.stdout + result.stderr


def test_files_are_private(agent, serve):
    server = serve(finish())
    conv_id = agent.start(server)
    agent("wait", conv_id)
    conv_dir = agent.dir(conv_id)
    assert conv_dir.stat().st_mode & 0o777 == 0o700
    for path in conv_dir.iterdir():
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path
