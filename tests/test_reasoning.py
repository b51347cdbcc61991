"""Reasoning models on all three wires (chat completions, the Responses API, Anthropic messages):
the effort each API expects, reasoning kept across a tool loop, partial reasoning kept and priced
when a call is interrupted, and the checks that refuse what a model does not take.

Every run talks to the scripted server, whose strict checker answers what the real APIs refuse
(thinking blocks left out of a tool loop, reasoning items changed or out of place) with a 400;
the `serve` fixture fails a test in which any request was refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from agent_proc import conversation, llm, wire_openai_responses
from tests.conftest import Agent, finish, terminal, wait_until

REASONING = "First I list the files, then I count them, and only then do I answer. " * 6
# A price, so that every run's cost is known (USD per token).
PRICED = {"LLM_INPUT_COST_PER_TOKEN": "0.000002", "LLM_OUTPUT_COST_PER_TOKEN": "0.000008"}

# Per wire: the model to run, the extra flags that choose the wire, and how many server-sent events
# open a stream before its first reasoning delta (role chunk; created, in_progress, item and part
# added; message_start, ping, content_block_start).
WIRES = {
    "chat": ("openai/scripted", ["--api", "chat"], 1),
    "responses": ("openai/scripted", ["--api", "responses"], 4),
    "anthropic": ("anthropic/scripted", [], 3),
}


def start(agent: Agent, server: Any, model: str, *flags: str, env: dict[str, str] | None = None) -> str:
    result = agent("run", "-d", "-m", model, "--base-url", server.url, *flags, "count the files",
                   env={**PRICED, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def settle(agent: Agent, conv_id: str) -> int:
    return agent("wait", conv_id, "--timeout", "60").returncode


def model_messages(agent: Agent, conv_id: str) -> list[dict[str, Any]]:
    return agent.events(conv_id, "model_message")


# --------------------------------------------------------------------------- effort, as each API expects it


@pytest.mark.parametrize("wire, expected", [
    ("chat", {"reasoning_effort": "high"}),
    ("responses", {"reasoning": {"effort": "high", "summary": "auto"}, "include": ["reasoning.encrypted_content"],
                   "store": False}),
    ("anthropic", {"thinking": {"type": "enabled", "budget_tokens": 32_000}, "max_tokens": 40_192}),
])
def test_effort_is_sent_as_each_api_expects(agent, serve, wire, expected):
    model, flags, _ = WIRES[wire]
    server = serve(finish())
    conv_id = start(agent, server, model, *flags, "--reasoning-effort", "high")
    assert settle(agent, conv_id) == 0
    body = server.requests()[0]
    assert {key: body.get(key) for key in expected} == expected
    path = server.events()[0]["path"]
    assert path == {"chat": "/v1/chat/completions", "responses": "/v1/responses", "anthropic": "/v1/messages"}[wire]
    assert agent.state(conv_id).settings.reasoning_effort == "high"


@pytest.mark.parametrize("model, flags, expected, absent", [
    ("openai/gpt-5.2", ["--api", "chat"], {"max_completion_tokens": 2000}, "max_tokens"),
    ("openai/gpt-5.2", [], {"max_output_tokens": 2000}, "max_tokens"),
    ("anthropic/scripted", ["--thinking-budget", "10000"], {"max_tokens": 18_192}, "max_completion_tokens"),
])
def test_the_output_limit_has_each_apis_name_and_stays_above_the_thinking(agent, serve, model, flags, expected,
                                                                          absent):
    server = serve(finish())
    conv_id = start(agent, server, model, *flags, "--max-output-tokens", "2000")
    assert settle(agent, conv_id) == 0
    body = server.requests()[0]
    assert {key: body.get(key) for key in expected} == expected and absent not in body


def test_effort_and_api_come_from_the_environment_too(agent, serve):
    server = serve(finish())
    conv_id = start(agent, server, "openai/scripted", env={"LLM_REASONING_EFFORT": "low", "LLM_API": "responses"})
    assert settle(agent, conv_id) == 0
    assert server.requests()[0]["reasoning"] == {"effort": "low", "summary": "auto"}
    settings = agent.state(conv_id).settings
    assert (settings.reasoning_effort, settings.api) == ("low", "responses")


def test_a_thinking_budget_of_our_own_keeps_max_tokens_above_it(agent, serve):
    server = serve(finish())
    conv_id = start(agent, server, "anthropic/scripted", "--thinking-budget", "2048")
    assert settle(agent, conv_id) == 0
    body = server.requests()[0]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] > 2048 and body["max_tokens"] >= 8192


def test_a_model_that_thinks_adaptively_gets_an_effort_not_a_budget(agent, serve):
    server = serve(finish())
    conv_id = start(agent, server, "anthropic/claude-opus-4-7", "--reasoning-effort", "max")
    assert settle(agent, conv_id) == 0
    body = server.requests()[0]
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "max"}


@pytest.mark.parametrize("model, api", [
    ("openai/gpt-5.2", "responses"), ("openai/o3", "responses"), ("openai/gpt-5.9-preview", "responses"),
    ("openai/gpt-4o", "chat"), ("openai/scripted", "chat"), ("gemini/gemini-2.5-pro", "chat"),
])
def test_openai_reasoning_models_default_to_the_responses_api(agent, serve, model, api):
    server = serve(finish())
    conv_id = start(agent, server, model)
    assert settle(agent, conv_id) == 0
    assert server.events()[0]["path"] == {"responses": "/v1/responses", "chat": "/v1/chat/completions"}[api]
    assert agent.state(conv_id).settings.api == api


def test_effort_none_for_a_model_that_never_reasons_is_left_out(agent, serve):
    server = serve(finish())
    conv_id = start(agent, server, "openai/gpt-4o", "--reasoning-effort", "none")
    assert settle(agent, conv_id) == 0
    assert "reasoning_effort" not in server.requests()[0]


@pytest.mark.parametrize("model, flags, message", [
    ("openai/gpt-4o", ["--reasoning-effort", "high"], "does not reason"),
    ("openai/gpt-5.2", ["--reasoning-effort", "minimal"], "takes --reasoning-effort none|low|medium|high|xhigh"),
    ("anthropic/claude-opus-4-7", ["--thinking-budget", "4096"], "leave out --thinking-budget"),
    ("anthropic/claude-sonnet-4-5", ["--thinking-budget", "64000"], "leaves no room for an answer"),
    ("anthropic/claude-mythos-5", ["--reasoning-effort", "none"], "always reasons"),
    ("openai/scripted", ["--thinking-budget", "4096"], "--thinking-budget is for Anthropic models"),
    ("anthropic/scripted", ["--api", "responses"], "speaks the anthropic format"),
    ("openai/gpt-5.2-pro", ["--api", "chat"], "Responses API only"),
])
def test_a_setting_the_model_does_not_take_is_refused_before_start(agent, model, flags, message):
    result = agent("run", "-m", model, "--base-url", "http://127.0.0.1:9/v1", *flags, "hi")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert not conversation.list_dirs(agent.home)


def test_resume_checks_a_new_effort_too(agent, serve):
    server = serve(finish())
    conv_id = start(agent, server, "openai/gpt-4o")
    assert settle(agent, conv_id) == 0
    agent("send", conv_id, "again")
    result = agent("resume", conv_id, "--reasoning-effort", "high")
    assert result.returncode == 2 and "does not reason" in result.stderr


# --------------------------------------------------------------------------- reasoning kept across a tool loop


def test_reasoning_items_go_back_unchanged_across_a_tool_loop_on_the_responses_api(agent, serve):
    server = serve(terminal("ls", reasoning="I should look at the files first."),
                   {**finish("2 files"), "reasoning": "Two files: done."})
    conv_id = start(agent, server, "openai/gpt-5.2", "--reasoning-effort", "medium")
    assert settle(agent, conv_id) == 0

    first, second = model_messages(agent, conv_id)
    assert first["reasoning"] == "I should look at the files first."
    assert first["reasoning_api"] == "openai_responses"
    [item] = first["reasoning_items"]
    assert item["type"] == "reasoning" and item["encrypted_content"]
    # The second request carries the item exactly as it came, before the call it led to and its output.
    later = server.requests()[1]["input"]
    at = later.index(item)
    assert later[at + 1]["type"] == "function_call" and later[at + 2]["type"] == "function_call_output"
    assert later[at + 1]["call_id"] == later[at + 2]["call_id"] == first["tool_calls"][0]["id"]
    assert second["usage"]["reasoning_tokens"] > 0 and second["cost"] > 0


@pytest.mark.parametrize("wire", ["responses", "anthropic"])
@pytest.mark.parametrize("stream", [True, False])
def test_reasoning_round_trips_whole_or_streamed_with_its_usage(agent, serve, wire, stream):
    model, flags, _ = WIRES[wire]
    usage = {"prompt_tokens": 120, "completion_tokens": 60, "cached_tokens": 100, "reasoning_tokens": 40}
    server = serve(terminal("ls", reasoning="Look first.", usage=usage), {**finish("done"), "reasoning": "Done."})
    conv_id = start(agent, server, model, *flags, "--reasoning-effort", "low",
                    *([] if stream else ["--no-stream"]))
    assert settle(agent, conv_id) == 0, agent.output(conv_id)
    first = model_messages(agent, conv_id)[0]
    assert first["reasoning"] == "Look first." and len(first["reasoning_items"]) == 1
    assert first["usage"]["prompt_tokens"] >= 120 and first["usage"]["cached_tokens"] == 100
    if wire == "responses":  # Anthropic counts thinking in its output tokens without a figure of its own
        assert first["usage"]["reasoning_tokens"] == 40
    assert json.dumps(first["reasoning_items"][0]) in json.dumps(server.requests()[1])


def test_thinking_blocks_go_back_unchanged_across_a_tool_loop_on_anthropic(agent, serve):
    server = serve(terminal("ls", reasoning="I should look at the files first."),
                   {**finish("2 files"), "reasoning": "Two files: done."})
    conv_id = start(agent, server, "anthropic/scripted", "--reasoning-effort", "low")
    assert settle(agent, conv_id) == 0

    first = model_messages(agent, conv_id)[0]
    [block] = first["reasoning_items"]
    assert block["type"] == "thinking" and block["thinking"] == first["reasoning"] and block["signature"]
    assistant = server.requests()[1]["messages"][1]
    assert assistant["role"] == "assistant" and assistant["content"][0] == block
    assert [b["type"] for b in assistant["content"]] == ["thinking", "tool_use"]


@pytest.mark.parametrize("stream", [True, False])
def test_redacted_thinking_goes_back_as_it_came_before_the_thinking(agent, serve, stream):
    server = serve(terminal("ls", reasoning="Look first.", redacted_thinking=True), finish("done"))
    conv_id = start(agent, server, "anthropic/scripted", "--reasoning-effort", "low",
                    *([] if stream else ["--no-stream"]))
    assert settle(agent, conv_id) == 0, agent.output(conv_id)
    redacted, thinking = model_messages(agent, conv_id)[0]["reasoning_items"]
    assert redacted["type"] == "redacted_thinking" and redacted["data"] and thinking["type"] == "thinking"
    assistant = server.requests()[1]["messages"][1]
    assert assistant["content"][:2] == [redacted, thinking]


def test_the_strict_server_refuses_a_tool_loop_without_its_thinking(serve):
    server = serve(refusals_expected=True)
    body = {"model": "m", "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": [
        {"role": "user", "content": "count the files"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "terminal",
                                           "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a b"}]},
    ]}
    answer = requests.post(f"{server.url}/messages", json=body, timeout=10)
    assert answer.status_code == 400 and "must start with a thinking block" in answer.json()["error"]["message"]
    body["messages"][1]["content"].insert(0, {"type": "thinking", "thinking": "I will look", "signature": "forged"})
    answer = requests.post(f"{server.url}/messages", json=body, timeout=10)
    assert answer.status_code == 400 and "Invalid `signature`" in answer.json()["error"]["message"]
    body["messages"][1]["content"][0] = {"type": "redacted_thinking", "data": "bm90IHNlYWxlZA=="}
    answer = requests.post(f"{server.url}/messages", json=body, timeout=10)
    assert answer.status_code == 400 and "Invalid `data`" in answer.json()["error"]["message"]


def test_the_strict_server_refuses_reasoning_items_changed_or_out_of_place(serve):
    server = serve({"reasoning": "Thinking it over.", "content": "ok"}, refusals_expected=True)
    first = requests.post(f"{server.url}/responses", timeout=10, json={
        "model": "m", "input": "hi", "store": False, "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"]}).json()
    item = {k: v for k, v in first["output"][0].items() if k in ("type", "id", "summary", "encrypted_content")}
    reply = {"role": "assistant", "content": "ok"}

    def refusal(*items: dict[str, Any]) -> str:
        answer = requests.post(f"{server.url}/responses", timeout=10, json={
            "model": "m", "store": False, "input": [{"role": "user", "content": "hi"}, *items,
                                                    {"role": "user", "content": "and?"}]})
        assert answer.status_code == 400, answer.text
        return answer.json()["error"]["message"]

    assert "could not be verified" in refusal({**item, "encrypted_content": item["encrypted_content"][:-8]}, reply)
    assert "without its required following item" in refusal(item)
    assert "not persisted" in refusal({k: v for k, v in item.items() if k != "encrypted_content"}, reply)


def test_thinking_switched_on_in_the_middle_of_a_tool_loop_waits_for_the_next_turn(agent, serve):
    server = serve(terminal("ls"), {"hang": True},
                   terminal("wc -l *", reasoning="Counting lines now."), {**finish("2 files"), "reasoning": "Done."})
    conv_id = start(agent, server, "anthropic/scripted")
    wait_until(lambda: server.wait_for("request", n=1, timeout=0.1))
    assert agent("interrupt", conv_id).returncode == 0
    resumed = agent("resume", conv_id, "-q", "--reasoning-effort", "low")
    assert resumed.returncode == 0, resumed.stderr + agent.output(conv_id)
    # The loop began without thinking, so the API would refuse thinking now: it is left out, this once.
    assert "thinking" not in server.requests()[2]
    assert server.requests()[3]["thinking"] == {"type": "enabled", "budget_tokens": 4096}


# --------------------------------------------------------------------------- interrupt during reasoning


@pytest.mark.parametrize("wire", ["chat", "responses", "anthropic"])
def test_interrupt_during_reasoning_keeps_it_priced_and_resume_is_accepted(agent, serve, wire):
    model, flags, opening = WIRES[wire]
    # The model streams four pieces of its reasoning, then thinks on in silence until it is stopped.
    server = serve({"reasoning": REASONING, "content": "unused", "chunk_chars": 8, "hang_after_chunks": opening + 4},
                   terminal("ls", reasoning="Now with a fresh start: list them."),
                   {**finish("2 files"), "reasoning": "Two files."})
    conv_id = start(agent, server, model, *flags, "--reasoning-effort", "medium")
    wait_until(lambda: REASONING[:32] in agent.output(conv_id))
    stopped = agent("interrupt", conv_id)
    assert stopped.returncode == 0, stopped.stderr

    cut = model_messages(agent, conv_id)[0]
    assert cut["partial"] and cut["outcome"] == "interrupted"
    assert cut["reasoning"] == REASONING[:32] and cut["content"] == ""
    assert not cut.get("reasoning_items"), "a thinking block cut off has no signature and never goes back"
    assert cut["usage_estimated"] and cut["usage"]["reasoning_tokens"] == 8
    assert cut["usage"]["completion_tokens"] >= 8 and cut["cost"] > 0 and cut["cost_estimated"]
    assert agent.state(conv_id).metrics.accumulated_cost >= cut["cost"] > 0
    shown = agent("show", conv_id).stdout
    assert "PARTIAL: interrupted" in shown and f"reasoning (cut off): {REASONING[:32]}" in shown
    assert "(8 reasoning)" in shown
    assert "[reasoning]" in agent.output(conv_id)

    resumed = agent("resume", conv_id, "-q")
    assert resumed.returncode == 0, resumed.stderr + agent.output(conv_id)
    assert resumed.stdout == "2 files\n"
    # The cut-off reasoning never went back to the model, on any wire.
    later = json.dumps(server.requests()[1])
    assert REASONING[:32] not in later


def test_an_interrupted_thinking_block_stays_out_of_a_tool_loop_that_goes_on(agent, serve):
    server = serve(terminal("ls", reasoning="Look at the files first."),
                   {"reasoning": REASONING, "content": "unused", "chunk_chars": 8, "hang_after_chunks": 7},
                   {**finish("2 files"), "reasoning": "Two files."})
    conv_id = start(agent, server, "anthropic/scripted", "--reasoning-effort", "low")
    wait_until(lambda: REASONING[:32] in agent.output(conv_id))
    assert agent("interrupt", conv_id).returncode == 0
    assert agent("resume", conv_id, "-q").returncode == 0

    signed = model_messages(agent, conv_id)[0]["reasoning_items"][0]
    resumed_request = server.requests()[2]["messages"]
    thinking = [block for message in resumed_request for block in message["content"]
                if isinstance(block, dict) and block["type"] == "thinking"]
    assert thinking == [signed]  # the signed block of the first call goes back; the cut-off one does not


def test_foreground_progress_sets_reasoning_apart_and_quiet_hides_it(agent, serve):
    server = serve({**finish("done"), "reasoning": "Weighing it up.", "content": "Answer text."},
                   {**finish("done"), "reasoning": "Weighing it up."})
    loud = agent("run", "-m", "openai/scripted", "--base-url", server.url, "--api", "responses",
                 "--reasoning-effort", "low", "task")
    assert loud.returncode == 0, loud.stderr
    assert "[reasoning]\nWeighing it up.\n[answer]\nAnswer text." in loud.stderr
    quiet = agent("run", "-q", "-m", "openai/scripted", "--base-url", server.url, "--api", "responses",
                  "--reasoning-effort", "low", "task")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == "done\n"


def test_a_reply_of_reasoning_alone_sends_no_reasoning_item_on():
    item = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"}
    alone = {"role": "assistant", "content": None, "reasoning_items": [item], "reasoning_api": "openai_responses"}
    with_text = {**alone, "content": "ok"}
    assert wire_openai_responses.convert_messages([alone]) == []
    assert wire_openai_responses.convert_messages([with_text]) == [item, {"role": "assistant", "content": "ok"}]


def feed(*events: dict[str, Any]) -> tuple[llm.Partial, list[bool]]:
    """Responses API stream events folded into a fresh Partial, with what each call returned."""
    partial = llm.Partial()
    return partial, [wire_openai_responses.read_stream_event(e, partial, lambda kind, text: None) for e in events]


def test_a_response_cut_off_by_the_output_limit_ends_the_stream_as_length():
    partial, ends = feed(
        {"type": "response.reasoning_summary_text.delta", "delta": "Thinking"},
        {"type": "response.incomplete", "response": {
            "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
            "usage": {"input_tokens": 10, "output_tokens": 16, "output_tokens_details": {"reasoning_tokens": 16}}}},
    )
    assert ends == [False, True] and partial.finish_reason == "length" and partial.reasoning == "Thinking"
    assert partial.usage == {"prompt_tokens": 10, "completion_tokens": 16, "reasoning_tokens": 16}


@pytest.mark.parametrize("event, retryable", [
    ({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}, True),
    ({"type": "error", "code": "invalid_prompt", "message": "no"}, False),
    ({"type": "response.failed", "response": {"status": "failed",
                                              "error": {"code": "server_error", "message": "oops"}}}, True),
])
def test_errors_in_a_responses_stream_are_classified(event, retryable):
    with pytest.raises(llm.LLMError) as caught:
        feed(event)
    assert caught.value.retryable is retryable and "\n" not in str(caught.value)


def test_config_file_gives_run_its_reasoning_defaults(agent, serve):
    server = serve(finish())
    assert agent("config", "set", "reasoning_effort", "low").returncode == 0
    assert agent("config", "set", "api", "responses").returncode == 0
    bad = agent("config", "set", "reasoning_effort", "extreme")
    assert bad.returncode == 2 and "extreme" in bad.stderr
    conv_id = start(agent, server, "openai/scripted")
    assert settle(agent, conv_id) == 0
    assert server.requests()[0]["reasoning"] == {"effort": "low", "summary": "auto"}
    listed = json.loads(agent("config", "list", "--json").stdout)
    assert listed["reasoning_effort"] == {"value": "low", "source": "config"}


def test_a_conversation_moved_to_another_model_takes_that_models_api(agent, serve):
    server = serve(finish("first"), finish("second"))
    conv_id = start(agent, server, "openai/gpt-5.2")
    assert settle(agent, conv_id) == 0 and agent.state(conv_id).settings.api == "responses"
    agent("send", conv_id, "and now with Claude")
    moved = agent("resume", conv_id, "-q", "-m", "anthropic/scripted", "--base-url", server.url, env=PRICED)
    assert moved.returncode == 0, moved.stderr
    assert [e["path"] for e in server.events() if e["event"] == "request"] == ["/v1/responses", "/v1/messages"]
    assert agent.state(conv_id).settings.api is None
