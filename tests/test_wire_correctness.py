"""Correct on the wire: every request a strict API would accept, every odd answer handled,
the key only where it belongs. Real runs of the CLI against the scripted server, whose
strict checker refuses (with the API's own 400) any request the real API would refuse;
each test runs on both wires where the point applies."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests

from agent_proc import logs, wire_anthropic, wire_openai
from agent_proc.tools import TOOL_SPECS
from supervisor.scripted_server import check_anthropic_messages, check_openai_chat, start_server
from tests.conftest import dump, finish, slow_text, terminal, wait_until

FAST_RETRY = {"retry-after-ms": "0"}  # an answer the client retries at once
ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")


@pytest.fixture(params=["openai", "anthropic"])
def provider(request: pytest.FixtureRequest) -> str:
    return request.param


def run(agent, server, provider: str, *extra: str, env: dict[str, str] | None = None, prompt: str = "go"):
    return agent("run", "-m", f"{provider}/scripted", "--base-url", server.url, *extra, prompt, env=env)


def last_id(agent) -> str:
    """The conversation made last (`ps` lists them by id, not by age)."""
    return max(agent("ps", "-a", "-q").stdout.split(), key=lambda conv_id: agent.state(conv_id).created_at)


def texts(message: dict[str, Any]) -> list[str]:
    """The text of a request message on either wire."""
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    return [block.get("text", "") for block in content or [] if block.get("type") == "text"]


def sent_tool_ids(body: dict[str, Any]) -> list[str]:
    """Every tool call id in the assistant turns of a request, on either wire."""
    ids = []
    for message in body["messages"]:
        ids += [call["id"] for call in message.get("tool_calls") or []]
        if isinstance(message.get("content"), list):
            ids += [block["id"] for block in message["content"] if block.get("type") == "tool_use"]
    return ids


# ---------------------------------------------------------------------------- the strict checker


ANTHROPIC_BASE = {"model": "claude-test", "max_tokens": 100}
USER = {"role": "user", "content": "hello"}


def tool_use(call_id: str = "toolu_1", name: str = "terminal") -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": {"command": "ls"}}


def tool_result(call_id: str = "toolu_1") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": "a.txt"}


def cached(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}


ANTHROPIC_REFUSED = {
    "no max_tokens": ({"model": "claude-test", "messages": [USER]}, "max_tokens"),
    "whitespace text block": ({**ANTHROPIC_BASE, "messages": [
        USER, {"role": "assistant", "content": [{"type": "text", "text": "\n\n"}, tool_use()]},
        {"role": "user", "content": [tool_result()]}]}, "non-whitespace"),
    "trailing whitespace in a final assistant message": ({**ANTHROPIC_BASE, "messages": [
        USER, {"role": "assistant", "content": "Half an answer \n"}]}, "trailing whitespace"),
    "system role in messages": ({**ANTHROPIC_BASE, "messages": [{"role": "system", "content": "Be brief."}, USER]},
                                "top-level system"),
    "two user turns in a row": ({**ANTHROPIC_BASE, "messages": [USER, USER]}, "alternate"),
    "first message from the assistant": ({**ANTHROPIC_BASE, "messages": [
        {"role": "assistant", "content": "Hi"}, USER]}, "first message"),
    "tool_use never answered": ({**ANTHROPIC_BASE, "messages": [
        USER, {"role": "assistant", "content": [tool_use()]}, USER]}, "without tool_result"),
    "tool_result after text": ({**ANTHROPIC_BASE, "messages": [
        USER, {"role": "assistant", "content": [tool_use()]},
        {"role": "user", "content": [{"type": "text", "text": "and?"}, tool_result()]}]}, "come first"),
    "two results for one call": ({**ANTHROPIC_BASE, "messages": [
        USER, {"role": "assistant", "content": [tool_use()]},
        {"role": "user", "content": [tool_result(), tool_result()]}]}, "more than one tool_result"),
    "tool id with a dot": ({**ANTHROPIC_BASE, "messages": [
        USER, {"role": "assistant", "content": [tool_use("call.1")]},
        {"role": "user", "content": [tool_result("call.1")]}]}, "must match"),
    "bad tool name": ({**ANTHROPIC_BASE, "messages": [USER],
                       "tools": [{"name": "run shell", "input_schema": {"type": "object"}}]}, "tool name"),
    "five cache breakpoints": ({**ANTHROPIC_BASE, "system": [cached("one"), cached("two"), cached("three")],
                                "messages": [{"role": "user", "content": [cached("four"), cached("five")]}]},
                               "cache_control"),
    "an unknown parameter": ({**ANTHROPIC_BASE, "messages": [USER], "frequency_penalty": 1}, "unknown parameter"),
}

OPENAI_BASE = {"model": "gpt-test"}


def openai_call(call_id: str = "call_1", name: str = "terminal") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


OPENAI_REFUSED = {
    "assistant content null without tool_calls": ({**OPENAI_BASE, "messages": [
        USER, {"role": "assistant", "content": None}, USER]}, "content null"),
    "tool call never answered": ({**OPENAI_BASE, "messages": [
        USER, {"role": "assistant", "content": None, "tool_calls": [openai_call()]}, USER]}, "tool_call_id"),
    "tool message without a call": ({**OPENAI_BASE, "messages": [
        USER, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]}, "preceding message"),
    "one id for two calls": ({**OPENAI_BASE, "messages": [
        USER, {"role": "assistant", "content": None, "tool_calls": [openai_call(), openai_call()]},
        {"role": "tool", "tool_call_id": "call_1", "content": "x"}]}, "more than once"),
    "tool id with a colon": ({**OPENAI_BASE, "messages": [
        USER, {"role": "assistant", "content": None, "tool_calls": [openai_call("functions.terminal:0")]},
        {"role": "tool", "tool_call_id": "functions.terminal:0", "content": "x"}]}, "must match"),
    "bad tool name": ({**OPENAI_BASE, "messages": [USER],
                       "tools": [{"type": "function", "function": {"name": "run shell"}}]}, "tool name"),
    "tool_choice without tools": ({**OPENAI_BASE, "messages": [USER], "tool_choice": "auto"}, "tool_choice"),
    "stream_options without stream": ({**OPENAI_BASE, "messages": [USER], "stream_options": {"include_usage": True}},
                                      "stream_options"),
    "whitespace user message": ({**OPENAI_BASE, "messages": [{"role": "user", "content": " \n"}]}, "non-empty"),
    "no model": ({"messages": [USER]}, "model"),
}


@pytest.mark.parametrize(("wire", "case"), [("anthropic", case) for case in ANTHROPIC_REFUSED]
                         + [("openai", case) for case in OPENAI_REFUSED])
def test_the_strict_checker_refuses_what_the_api_refuses_with_its_own_400(serve, wire: str, case: str) -> None:
    body, expected = (ANTHROPIC_REFUSED if wire == "anthropic" else OPENAI_REFUSED)[case]
    server = serve(finish(), refusals_expected=True)
    path = "/messages" if wire == "anthropic" else "/chat/completions"
    answer = requests.post(server.url + path, json=body, timeout=5)
    assert answer.status_code == 400
    doc = answer.json()
    if wire == "anthropic":
        assert doc["type"] == "error" and doc["error"]["type"] == "invalid_request_error"
    else:
        assert doc["error"]["type"] == "invalid_request_error" and "param" in doc["error"]
    assert expected in doc["error"]["message"], doc
    assert len(server.rejections()) == 1
    # A refused request uses up no step: the next good one still gets the first answer.
    good = {**ANTHROPIC_BASE, "messages": [USER]} if wire == "anthropic" else {**OPENAI_BASE, "messages": [USER]}
    assert requests.post(server.url + path, json=good, timeout=5).status_code == 200


def test_a_lenient_server_answers_what_a_strict_one_refuses() -> None:
    body, _ = ANTHROPIC_REFUSED["no max_tokens"]
    with start_server({"steps": [{"content": "fine"}]}, strict=False) as server:
        assert requests.post(server.url + "/messages", json=body, timeout=5).status_code == 200
        assert server.rejections() == []


def test_requests_the_client_builds_from_an_untidy_history_pass_the_checker() -> None:
    untidy = [
        {"role": "system", "content": "You work in /tmp."},
        {"role": "user", "content": "look around"},
        {"role": "assistant", "content": "\n\n", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "terminal", "arguments": '{"command": "ls"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": ""},
        {"role": "assistant", "content": None},  # an empty answer an older version stored
        {"role": "user", "content": "and now?"},
        {"role": "assistant", "content": "Cut off mid-sentence \n"},
    ]
    _, _, anthropic = wire_anthropic.build_request("claude-test", "http://x/v1", None, untidy, TOOL_SPECS, True)
    _, _, openai = wire_openai.build_request("gpt-test", "http://x/v1", None, untidy[:-1], TOOL_SPECS, True)
    assert check_anthropic_messages.problems(anthropic) == []
    assert check_openai_chat.problems(openai) == []
    assert anthropic["messages"][-1]["content"][-1]["text"] == "Cut off mid-sentence"
    assert all((m["content"] or "").strip() or m.get("tool_calls") for m in openai["messages"]
               if m["role"] == "assistant")


# ---------------------------------------------------------------------------- requests the API accepts


def test_whitespace_before_a_tool_call_is_never_sent_back(agent, serve, provider) -> None:
    server = serve(terminal("echo hi", content="\n\n"), finish())
    result = run(agent, server, provider)
    assert result.returncode == 0, result.stderr
    # The strict checker saw every request (conftest fails the test on a refusal); say it here too.
    second = server.requests()[1]
    assert all(text.strip() for message in second["messages"] if message["role"] == "assistant"
               for text in texts(message) if text is not None)


def test_an_empty_answer_is_never_replayed_after_send_and_resume(agent, serve, provider) -> None:
    empty = {"content": "", "headers": FAST_RETRY}
    server = serve(*[empty] * 5, finish("second time lucky"))
    assert run(agent, server, provider).returncode == 1
    conv_id = last_id(agent)
    state = agent.state(conv_id)
    assert state.status_kind == "empty_answer", dump(agent, conv_id)
    assert len(server.requests()) == 5
    assert agent("send", conv_id, "try again").returncode == 0
    resumed = agent("resume", conv_id)
    assert resumed.returncode == 0, resumed.stderr
    last = server.requests()[-1]["messages"]
    assert [m["role"] for m in last if m["role"] == "assistant"] == []


def test_an_empty_answer_is_retried_then_the_reply_counts(agent, serve, provider) -> None:
    server = serve({"content": " \n", "headers": FAST_RETRY}, finish("done"))
    result = run(agent, server, provider)
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    conv_id = last_id(agent)
    failed = agent.events(conv_id, "model_attempt_failed")
    assert [f["kind"] for f in failed] == ["empty"]
    metrics = agent.state(conv_id).metrics
    assert (metrics.model_calls, metrics.http_attempts) == (1, 2)


@pytest.mark.parametrize("stream", [True, False])
def test_tool_calls_without_ids_get_unique_valid_ones(agent, serve, provider, stream: bool) -> None:
    two_calls = {"omit_tool_ids": True, "tool_calls": [
        {"name": "terminal", "arguments": {"command": "echo one"}},
        {"name": "terminal", "arguments": {"command": "echo two"}}]}
    same_id_again = {"tool_calls": [{"name": "terminal", "arguments": {"command": "echo three"}, "id": "call_0"}]}
    reused = {"tool_calls": [{"name": "terminal", "arguments": {"command": "echo four"}, "id": "call_0"}]}
    server = serve(two_calls, same_id_again, reused, finish())
    result = run(agent, server, provider, *([] if stream else ["--no-stream"]))
    assert result.returncode == 0, result.stderr
    conv_id = last_id(agent)
    ids = sent_tool_ids(server.requests()[-1])
    assert len(ids) == 4 and len(set(ids)) == 4 and all(ID_PATTERN.match(i) for i in ids), ids
    outputs = [r["content"] for r in agent.events(conv_id, "tool_result")]
    assert ["one" in outputs[0], "two" in outputs[1], "three" in outputs[2], "four" in outputs[3]] == [True] * 4


def test_keep_partial_never_sends_a_retried_attempts_partial(agent, serve, provider) -> None:
    broken = {"content": "Alpha draft that the server cut short. " * 4, "chunk_chars": 8, "drop_after_chunks": 6,
              "headers": FAST_RETRY}
    server = serve(broken, slow_text(seconds=30), finish())
    conv_id = agent.start(server, "task", "-m", f"{provider}/scripted")
    wait_until(lambda: "think" in agent.output(conv_id))
    agent("interrupt", conv_id)
    assert agent("resume", conv_id, "--keep-partial").returncode == 0
    sent = " ".join(text for message in server.requests()[-1]["messages"] for text in texts(message))
    assert "Let me think" in sent and "Alpha draft" not in sent
    outcomes = [m["outcome"] for m in agent.events(conv_id, "model_message")]
    assert outcomes == ["failed", "interrupted", "complete"]


# ---------------------------------------------------------------------------- odd answers


def test_a_json_answer_to_a_streamed_request_is_read_whole(agent, serve, provider) -> None:
    server = serve({"whole_answer": True, **terminal("echo hi")}, {"whole_answer": True, **finish("whole")})
    result = run(agent, server, provider)
    assert result.returncode == 0 and result.stdout == "whole\n", result.stderr
    assert all(body.get("stream") for body in server.requests())


def test_an_unexpected_body_is_one_clear_error_not_five_retries(agent, serve, provider) -> None:
    page = "<html>\n<body>\n  <h1>502 Bad Gateway</h1>\n</body>\n</html>\n"
    server = serve({"raw_body": page, "content_type": "text/html"}, finish())
    result = run(agent, server, provider)
    assert result.returncode == 1
    reason = agent.state(last_id(agent)).status_reason
    assert "text/html" in reason and "502 Bad Gateway" in reason and "\n" not in reason
    assert len(server.requests()) == 1


NOT_STREAMS = [
    ('{"error": {"message": "quota used up", "type": "invalid_request_error"}}', False),
    ('{"error": {"message": "busy", "type": "overloaded_error"}}', True),
    ("Service temporarily unavailable", False),
]


@pytest.mark.parametrize(("body", "retried"), NOT_STREAMS)
def test_a_stream_without_events_is_not_retried_as_a_broken_stream(agent, serve, provider, body: str,
                                                                  retried: bool) -> None:
    server = serve({"raw_body": body + "\n", "headers": FAST_RETRY}, finish("after"))
    result = run(agent, server, provider)
    conv_id = last_id(agent)
    failed = agent.events(conv_id, "model_attempt_failed")[0]
    assert "ended before it was complete" not in failed["error"] and "{" not in failed["error"], failed
    assert result.returncode == (0 if retried else 1)
    assert len(server.requests()) == (2 if retried else 1)


@pytest.mark.parametrize(("kind", "retried"), [("overloaded_error", True), ("rate_limit_error", True),
                                               ("server_error", True), ("invalid_request_error", False)])
def test_errors_inside_a_stream_are_classified_like_http_errors(agent, serve, provider, kind: str,
                                                               retried: bool) -> None:
    server = serve({"stream_error": kind, "error": "Things went\n  wrong here", "headers": FAST_RETRY},
                   finish("recovered"))
    result = run(agent, server, provider)
    conv_id = last_id(agent)
    failed = agent.events(conv_id, "model_attempt_failed")[0]
    assert "Things went wrong here" in failed["error"] and "{" not in failed["error"], failed
    if retried:
        assert result.returncode == 0 and result.stdout == "recovered\n", dump(agent, conv_id)
    else:
        assert result.returncode == 1 and len(server.requests()) == 1
        assert agent.state(conv_id).status_kind == "llm"


def test_a_cut_off_reply_is_recorded_and_the_model_goes_on(agent, serve, provider) -> None:
    server = serve({"content": "The first half of a long ", "truncated": True}, finish("the whole answer"))
    result = run(agent, server, provider, "--max-output-tokens", "64")
    assert result.returncode == 0 and result.stdout == "the whole answer\n", result.stderr
    conv_id = last_id(agent)
    assert [m["outcome"] for m in agent.events(conv_id, "model_message")] == ["truncated", "complete"]
    first, second = server.requests()
    limit = first.get("max_completion_tokens") if provider == "openai" else first.get("max_tokens")
    assert limit == 64
    cut, note = second["messages"][-2:]
    assert cut["role"] == "assistant" and texts(cut) == ["The first half of a long"]
    assert note["role"] == "user" and "cut off" in texts(note)[0]
    assert agent.state(conv_id).settings.max_output_tokens == 64


def test_a_cut_off_tool_call_is_never_run(agent, serve, provider) -> None:
    cut_call = {"truncated": True, "tool_calls": [{"name": "terminal", "raw_arguments": '{"command": "touch cu'}]}
    server = serve(cut_call, finish())
    assert run(agent, server, provider).returncode == 0
    conv_id = last_id(agent)
    first = agent.events(conv_id, "model_message")[0]
    assert first["tool_calls"] == [] and first["truncated_tool_calls"][0]["name"] == "terminal"
    assert agent.events(conv_id, "tool_result")[-1]["content"] == "[finished]"
    assert not list(agent.workspace.iterdir())


def test_three_cut_off_replies_in_a_row_end_the_run(agent, serve, provider) -> None:
    cut = {"content": "and on and on", "truncated": True}
    server = serve(cut, cut, cut, finish())
    assert run(agent, server, provider).returncode == 1
    state = agent.state(last_id(agent))
    assert state.status_kind == "max_tokens" and "--max-output-tokens" in state.status_reason
    assert len(server.requests()) == 3


def test_resume_changes_max_output_tokens(agent, serve, provider) -> None:
    server = serve({"content": "cut", "truncated": True}, {"content": "cut", "truncated": True},
                   {"content": "cut", "truncated": True}, finish("longer now"))
    assert run(agent, server, provider).returncode == 1
    conv_id = last_id(agent)
    resumed = agent("resume", conv_id, "--max-output-tokens", "4000")
    assert resumed.returncode == 0 and resumed.stdout == "longer now\n", resumed.stderr
    last = server.requests()[-1]
    assert (last.get("max_completion_tokens") or last.get("max_tokens")) == 4000


TRICKY = "héllo wörld, ∑ 日本語 and 🎉🚀 done"


@pytest.mark.parametrize("split", [{"chunk_bytes": 1}, {"split_surrogates": True, "chunk_chars": 1}],
                         ids=["utf8-bytes", "surrogate-pairs"])
def test_characters_split_across_stream_events_are_put_together(agent, serve, provider, split) -> None:
    server = serve({"content": TRICKY, **split}, finish(TRICKY))
    result = run(agent, server, provider)
    assert result.returncode == 0, result.stderr
    conv_id = last_id(agent)
    assert agent.events(conv_id, "model_message")[0]["content"] == TRICKY
    assert result.stdout == TRICKY + "\n"
    assert TRICKY in agent.output(conv_id)


def test_an_interrupt_between_two_halves_of_a_surrogate_pair_stores_the_text(agent, serve, provider) -> None:
    emoji = {"content": "Let me think " + "🎉" * 200, "chunk_chars": 1, "split_surrogates": True,
             "chunk_delay": 0.05}
    server = serve(emoji, finish())
    conv_id = agent.start(server, "task", "-m", f"{provider}/scripted")
    wait_until(lambda: "🎉🎉" in agent.output(conv_id))
    assert agent("interrupt", conv_id).returncode == 0
    partial = agent.events(conv_id, "model_message")[0]
    assert partial["outcome"] == "interrupted" and "\ufffd" not in partial["content"][:-1]
    assert agent.state(conv_id).status.value == "paused"


DEEP = "[" * 100_000 + "]" * 100_000


def test_tool_arguments_nested_too_deeply_get_an_error_result(agent, serve, provider) -> None:
    server = serve({"tool_calls": [{"name": "terminal", "raw_arguments": DEEP}]}, finish("ok"))
    result = run(agent, server, provider)
    assert result.returncode == 0, result.stderr
    conv_id = last_id(agent)
    invalid = agent.events(conv_id, "tool_result")[0]
    assert invalid["outcome"] == "invalid" and "nested too deeply" in invalid["content"]
    assert "internal error" not in agent.output(conv_id)


@pytest.mark.parametrize("streamed", [True, False])
def test_an_answer_nested_too_deeply_is_a_clear_failed_attempt(agent, serve, provider, streamed: bool) -> None:
    raw = f"data: {DEEP}\n\n" if streamed else DEEP
    server = serve({"raw_body": raw}, finish())
    result = run(agent, server, provider, *([] if streamed else ["--no-stream"]))
    assert result.returncode == 1
    state = agent.state(last_id(agent))
    assert state.status_kind == "llm" and "internal error" not in state.status_reason
    assert len(state.status_reason) < 400


def test_retry_after_ms_is_honoured_before_retry_after(agent, serve, provider) -> None:
    limited = {"status": 429, "error": "slow down", "headers": {"retry-after-ms": "150", "Retry-After": "60"}}
    server = serve(limited, finish("ok"))
    result = run(agent, server, provider)
    assert result.returncode == 0, result.stderr
    failed = agent.events(last_id(agent), "model_attempt_failed")[0]
    assert failed["retry_in_s"] == 0.15


def test_every_error_message_is_one_capped_line(agent, serve, provider) -> None:
    rambling = "Bad request:\n\n\t" + "this line goes on and on " * 200 + "\r\nthe end"
    server = serve({"status": 400, "error": rambling})
    assert run(agent, server, provider).returncode == 1
    conv_id = last_id(agent)
    reason = agent.state(conv_id).status_reason
    assert "\n" not in reason and "\t" not in reason and "  " not in reason and len(reason) <= 300
    assert "Bad request: this line goes on" in reason
    error_lines = [line for line in agent.output(conv_id).splitlines() if line.startswith("[error]")]
    assert error_lines == [f"[error] {reason}"]


def test_metrics_count_replies_and_http_attempts_apart(agent, serve, provider) -> None:
    failing = {"status": 500, "error": "boom", "headers": FAST_RETRY}
    server = serve(*[failing] * 5)
    assert run(agent, server, provider).returncode == 1
    metrics = agent.state(last_id(agent)).metrics
    assert (metrics.model_calls, metrics.http_attempts) == (0, 5)

    broken_then_fine = serve({"content": "a reply that breaks off " * 4, "drop_after_chunks": 4,
                              "headers": FAST_RETRY}, finish())
    assert run(agent, broken_then_fine, provider).returncode == 0
    metrics = agent.state(last_id(agent)).metrics
    assert (metrics.model_calls, metrics.http_attempts) == (1, 2)


# ---------------------------------------------------------------------------- the key


KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def test_a_redirect_is_never_followed(agent, serve, provider) -> None:
    elsewhere = serve(finish("stolen"))
    path = "/messages" if provider == "anthropic" else "/chat/completions"
    # Another host name for the same machine: the key must not travel there.
    location = elsewhere.url.replace("127.0.0.1", "localhost") + path
    server = serve({"status": 307, "error": "moved", "headers": {"Location": location}})
    result = run(agent, server, provider, env={KEY_ENV[provider]: "sk-redirect-secret"})
    assert result.returncode == 1
    state = agent.state(last_id(agent))
    assert "localhost" in state.status_reason and "redirect" in state.status_reason
    assert len(server.requests()) == 1 and elsewhere.requests() == []


def test_a_key_with_crlf_is_stripped(agent, serve, provider) -> None:
    server = serve({**finish("in"), "expect_api_key": "sk-crlf-key-123"})
    result = run(agent, server, provider, env={KEY_ENV[provider]: "  sk-crlf-key-123\r\n"})
    assert result.returncode == 0 and result.stdout == "in\n", result.stderr


@pytest.mark.parametrize("key", ["sk-with space", "sk-tëst-key", "sk-a\rb", "sk-tab\tkey"])
def test_a_key_that_cannot_go_in_a_header_is_a_usage_error(agent, serve, provider, key: str) -> None:
    server = serve(finish())
    result = run(agent, server, provider, env={KEY_ENV[provider]: key})
    assert result.returncode == 2
    assert KEY_ENV[provider] in result.stderr and "header" in result.stderr
    assert key.strip() not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert server.requests() == [] and agent("ps", "-a", "-q").stdout == ""


def test_the_providers_own_key_wins_over_llm_api_key(agent, serve, provider) -> None:
    server = serve({**finish("right key"), "expect_api_key": "sk-vendor-own"})
    env = {KEY_ENV[provider]: "sk-vendor-own", "LLM_API_KEY": "sk-generic-other"}
    result = run(agent, server, provider, env=env)
    assert result.returncode == 0 and result.stdout == "right key\n", result.stderr
    listed = json.loads(agent("models", "--json", env=env).stdout)["providers"]
    chosen = {p["name"]: p["key_from"] for p in listed}
    assert chosen[provider] == KEY_ENV[provider] and chosen["groq"] == "LLM_API_KEY"
    table = agent("models", env=env).stdout
    assert f"from {KEY_ENV[provider]}" in table


def test_a_key_an_error_quotes_is_never_recorded(agent, serve, provider) -> None:
    key = "sk-quoted-secret-4242"
    quoted = f"invalid key {key!r}, also as {json.dumps(key + chr(13))} and {key}%0D"
    server = serve({"status": 401, "error": quoted})
    result = run(agent, server, provider, env={KEY_ENV[provider]: key + "\r\n"})
    assert result.returncode == 1
    conv_dir = agent.dir(last_id(agent))
    for name in ("state.json", "events.jsonl", "output.log", "log.jsonl"):
        text = (conv_dir / name).read_text()
        assert "sk-quoted-secret" not in text, name
    assert "sk-quoted-secret" not in result.stderr + result.stdout
    assert "[redacted]" in agent.state(last_id(agent)).status_reason


def test_the_redactor_catches_escaped_forms_of_a_key() -> None:
    key = "sk-esc\u00e9ped-key\r\n"
    quoted = f"header value {key!r}; json {json.dumps(key)}; url sk-esc%C3%A9ped-key%0D%0A; bare {key.strip()}"
    scrubbed = logs.redact_text(quoted, [key])
    assert "sk-esc" not in scrubbed and scrubbed.count(logs.REDACTED) == 4
