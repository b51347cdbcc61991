"""Timeouts enforced from outside the child, retries, streaming failures and cost."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.conftest import fault_env, finish, slow_text, terminal, wait_until

PRICED = {"openai": ("openai/gpt-4o", 2.5e-6, 10e-6), "anthropic": ("anthropic/claude-sonnet-4-5", 3e-6, 15e-6)}


@pytest.fixture(params=["openai", "anthropic"])
def provider(request) -> str:
    """Each test runs against both wire formats: OpenAI chat completions and Anthropic messages."""
    return request.param


def seconds_between(a: dict, b: dict) -> float:
    parse = lambda e: datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))  # noqa: E731
    return (parse(b) - parse(a)).total_seconds()


def run_args(server, provider: str, *extra: str, model: str | None = None) -> list[str]:
    return ["run", "-m", model or f"{provider}/scripted", "--base-url", server.url, *extra, "go"]


def last_id(agent) -> str:
    return agent("ps", "-a", "-q").stdout.split()[0]  # newest first


def test_trickling_stream_is_cut_by_llm_timeout_within_a_second(agent, serve, provider):
    server = serve(slow_text(seconds=30))
    result = agent(*run_args(server, provider, "--llm-timeout", "1.5", "--on-timeout", "error"))
    assert result.returncode == 1, result.stderr
    conv_id = last_id(agent)
    state = agent.state(conv_id)
    assert state.status.value == "error" and state.status_kind == "llm_timeout"
    started = agent.events(conv_id, "model_call_started")[0]
    partial = agent.events(conv_id, "model_message")[0]
    assert partial["partial"] and partial["outcome"] == "timeout" and partial["content"].startswith("Let me")
    assert 1.5 <= seconds_between(started, partial) <= 2.5
    assert server.wait_for("client_disconnected")


def test_timed_out_call_is_retried_by_default(agent, serve, provider):
    server = serve(slow_text(seconds=30), finish("second time lucky"))
    result = agent(*run_args(server, provider, "--llm-timeout", "1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "second time lucky\n"
    conv_id = last_id(agent)
    failed = agent.events(conv_id, "model_attempt_failed")
    assert [f["kind"] for f in failed] == ["timeout"] and failed[0]["retry_in_s"] is not None
    outcomes = [m["outcome"] for m in agent.events(conv_id, "model_message")]
    assert outcomes == ["timeout", "complete"]


def test_timed_out_call_can_pause_the_run(agent, serve, provider):
    server = serve(slow_text(seconds=30), finish("resumed"))
    result = agent(*run_args(server, provider, "--llm-timeout", "1", "--on-timeout", "pause"))
    assert result.returncode == 130
    conv_id = last_id(agent)
    assert agent.state(conv_id).status_kind == "llm_timeout"
    assert agent("resume", conv_id).stdout == "resumed\n"


def test_watchdog_kills_a_child_that_ignores_every_signal_during_a_call(agent, serve, provider):
    server = serve(slow_text(seconds=30))
    result = agent(*run_args(server, provider, "--llm-timeout", "1", "--grace", "1"),
                   env=fault_env(ignore="SIGINT,SIGTERM,SIGUSR1"))
    assert result.returncode == 1, result.stderr
    conv_id = last_id(agent)
    state = agent.state(conv_id)
    assert state.status.value == "error" and state.status_kind == "llm_timeout"
    assert "had to be killed" in state.status_reason
    assert state.runtime.stop["method"] == "sigkill"
    started = agent.events(conv_id, "model_call_started")[0]
    stopped = agent.events(conv_id, "stopped")[0]
    assert seconds_between(started, stopped) <= 1 + 1 + 1


def test_watchdog_of_a_detached_run(agent, serve, provider):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server, "task", "-m", f"{provider}/scripted", "--llm-timeout", "1", "--on-timeout", "error")
    supervisor_pid = agent.state(conv_id).runtime.supervisor_pid
    assert supervisor_pid and supervisor_pid != agent.state(conv_id).runtime.pid
    assert agent("wait", conv_id, "--timeout", "10").returncode == 1
    assert agent.state(conv_id).status_kind == "llm_timeout"


def test_silent_server_is_cut_by_idle_timeout(agent, serve, provider):
    server = serve({"hang": True})
    result = agent(*run_args(server, provider, "--idle-timeout", "1", "--on-timeout", "error"))
    assert result.returncode == 1
    assert "no data from the model API for 1 s" in agent.state(last_id(agent)).status_reason
    assert server.wait_for("client_disconnected")


def test_stream_that_goes_silent_is_cut_by_idle_timeout_and_keeps_its_text(agent, serve, provider):
    server = serve({**slow_text("Halfway there. " * 4, seconds=0.2), "hang_after_chunks": 4})
    result = agent(*run_args(server, provider, "--idle-timeout", "1", "--on-timeout", "error"))
    assert result.returncode == 1
    partial = agent.events(last_id(agent), "model_message")[0]
    assert partial["outcome"] == "timeout" and partial["content"].startswith("Half")


def test_run_timeout_stops_the_run_with_exit_124(agent, serve, provider):
    server = serve(slow_text(seconds=30))
    result = agent(*run_args(server, provider, "--timeout", "1"))
    assert result.returncode == 124, result.stderr
    conv_id = last_id(agent)
    state = agent.state(conv_id)
    assert state.status.value == "error" and state.status_kind == "timeout"
    assert agent("wait", conv_id).returncode == 124
    assert agent.events(conv_id, "model_message")[-1]["partial"]


@pytest.mark.parametrize("failure", [
    {"status": 500, "error": "internal"},
    {"status": 529, "error": "overloaded"},
    {"status": 503, "error": "unavailable", "headers": {"Retry-After": "0"}},
    {"drop": True},
    {"drop_after_chunks": 3, "content": "cut short " * 10},
])
def test_transient_failures_are_retried(agent, serve, provider, failure):
    server = serve(failure, finish("recovered"))
    result = agent(*run_args(server, provider))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "recovered\n"
    assert len(agent.events(last_id(agent), "model_attempt_failed")) == 1


def test_truncated_stream_keeps_what_arrived_as_failed(agent, serve, provider):
    server = serve({"content": "The beginning of an answer " * 4, "drop_after_chunks": 5}, finish())
    assert agent(*run_args(server, provider)).returncode == 0
    partial = agent.events(last_id(agent), "model_message")[0]
    assert partial["partial"] and partial["outcome"] == "failed" and partial["content"].startswith("The beg")


@pytest.mark.parametrize("step", [{"malformed": True}, {"status": 401, "error": "bad key"}])
def test_permanent_failures_end_the_run_clearly(agent, serve, provider, step):
    server = serve(step, finish())
    result = agent(*run_args(server, provider))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(server.requests()) == 1
    assert agent.state(last_id(agent)).status_kind == "llm"


def test_malformed_response_without_streaming(agent, serve, provider):
    server = serve({"malformed": True})
    result = agent(*run_args(server, provider, "--no-stream"))
    assert result.returncode == 1
    assert "invalid JSON" in agent.state(last_id(agent)).status_reason
    assert "stream" not in server.requests()[0]


def test_interrupt_during_a_backoff_wait_stops_at_once(agent, serve, provider):
    server = serve({"status": 429, "error": "slow down", "headers": {"Retry-After": "60"}}, finish())
    conv_id = agent.start(server, "task", "-m", f"{provider}/scripted")
    wait_until(lambda: agent.events(conv_id, "model_attempt_failed"))
    report = json.loads(agent("interrupt", conv_id, "--json").stdout)["stop"]
    assert report["method"] == "sigint" and report["exit_ms"] < 1000
    assert agent.state(conv_id).status.value == "paused"


def test_cost_of_a_known_model_and_unknown_model(agent, serve, provider):
    usage = {"prompt_tokens": 1000, "completion_tokens": 100}
    server = serve({**finish("priced"), "usage": usage}, {**finish("unpriced"), "usage": usage})
    model, per_input, per_output = PRICED[provider]
    assert agent(*run_args(server, provider, model=model)).returncode == 0
    assert agent(*run_args(server, provider, model=f"{provider}/no-such-model")).returncode == 0
    unpriced, priced = agent("ps", "-a", "-q").stdout.split()  # newest first
    expected = 1000 * per_input + 100 * per_output
    assert agent.state(priced).metrics.accumulated_cost == pytest.approx(expected)
    assert agent.state(unpriced).metrics.accumulated_cost is None
    table = agent("ps", "-a").stdout
    assert f"${expected:.4f}" in table and "unknown" in table
    assert "cost unknown" in agent("show", unpriced).stdout


def test_interrupted_call_has_an_estimated_cost_and_cost_survives_resume(agent, serve, provider):
    server = serve({**terminal("true"), "usage": {"prompt_tokens": 1000, "completion_tokens": 100}},
                   slow_text(seconds=30), finish())
    model, per_input, per_output = PRICED[provider]
    conv_id = agent.start(server, "task", "-m", model)
    wait_until(lambda: "think" in agent.output(conv_id))
    agent("interrupt", conv_id)
    partial = agent.events(conv_id, "model_message")[-1]
    assert partial["partial"] and partial["cost_estimated"] and partial["cost"] > 0
    before = agent.state(conv_id).metrics.accumulated_cost
    assert before == pytest.approx(1000 * per_input + 100 * per_output + partial["cost"])
    assert agent("resume", conv_id).returncode == 0
    assert agent.state(conv_id).metrics.accumulated_cost >= before


def test_budget_stops_before_the_call_that_would_pass_it(agent, serve, provider):
    server = serve({**terminal("true"), "usage": {"prompt_tokens": 100, "completion_tokens": 100}}, finish())
    env = {"LLM_INPUT_COST_PER_TOKEN": "0.001", "LLM_OUTPUT_COST_PER_TOKEN": "0.002"}
    result = agent(*run_args(server, provider, "--max-cost", "0.35"), env=env)
    assert result.returncode == 4, result.stderr
    state = agent.state(last_id(agent))
    assert state.status.value == "error" and state.status_kind == "budget"
    assert state.metrics.accumulated_cost == pytest.approx(0.3)
    assert len(server.requests()) == 1


def test_budget_needs_a_known_price(agent, serve, provider):
    server = serve(finish())
    result = agent(*run_args(server, provider, "--max-cost", "1"))
    assert result.returncode == 2 and "price" in result.stderr


def test_resume_keep_partial_sends_the_partial_text_back(agent, serve, provider):
    server = serve(slow_text(seconds=30), finish(), finish())
    conv_id = agent.start(server, "task", "-m", f"{provider}/scripted")
    wait_until(lambda: "think" in agent.output(conv_id))
    agent("interrupt", conv_id)
    assert agent("resume", conv_id, "--keep-partial").returncode == 0
    # The partial goes back as the model's own earlier output, then a note that it was cut
    # off: a user message last, so the next answer is a reply, not a prefill's continuation.
    partial, note = server.requests()[1]["messages"][-2:]

    def text(message):
        return message["content"] if provider == "openai" else message["content"][0]["text"]

    assert partial["role"] == "assistant" and text(partial).startswith("Let me think")
    assert note["role"] == "user" and "cut off" in text(note)
    assert agent.events(conv_id, "model_message")[-1]["outcome"] == "complete"


def test_no_stream_sends_plain_requests(agent, serve, provider):
    server = serve(terminal("echo hi"), finish("plain"))
    result = agent(*run_args(server, provider, "--no-stream"))
    assert result.returncode == 0 and result.stdout == "plain\n"
    assert all("stream" not in body for body in server.requests())
