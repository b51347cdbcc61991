"""Tests for agent_proc.wire_anthropic: the request it builds, and real calls through
`llm.call_once` to the scripted server speaking the Anthropic Messages API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from agent_proc import llm, wire_anthropic
from agent_proc.llm import CallConfig, LLMError, Partial
from agent_proc.providers import parse_model
from agent_proc.tools import TOOL_SPECS
from supervisor.scripted_server import ScriptedServer
from tests.conftest import Agent, finish, terminal

USER = [{"role": "user", "content": "list the files"}]


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def call(server: ScriptedServer, *, stream: bool, api_key: str | None = None,
         messages: list[dict[str, Any]] = USER) -> tuple[Partial, list[tuple[str, str]]]:
    """One real call to the server; the filled Partial and every delta it reported."""
    config = CallConfig(ref=parse_model("anthropic/claude-test"), base_url=server.url, api_key=api_key,
                        stream=stream)
    deltas: list[tuple[str, str]] = []
    with requests.Session() as session:
        partial = llm.call_once(session, config, messages, TOOL_SPECS, Partial(),
                                lambda kind, text: deltas.append((kind, text)))
    return partial, deltas


def feed(events: list[dict[str, Any]]) -> tuple[Partial, list[bool]]:
    """Stream events folded into a fresh Partial, with what each call returned."""
    partial = Partial()
    return partial, [wire_anthropic.read_stream_event(event, partial, lambda kind, text: None) for event in events]


# ---------------------------------------------------------------------------- building requests


def test_a_conversation_is_translated_and_same_role_turns_merged() -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "system", "content": "Work in /tmp."},
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            tool_call("toolu_1", "terminal", '{"command": "ls"}'),
            tool_call("toolu_2", "terminal", '{"command": '),
            tool_call("toolu_3", "terminal", '["not", "an", "object"]'),
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "a.txt"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "[error] invalid JSON"},
        {"role": "tool", "tool_call_id": "toolu_3", "content": "[error] not an object"},
        {"role": "user", "content": "and now?"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call("toolu_4", "finish", '{"message": "ok"}')]},
    ]
    _, _, body = wire_anthropic.build_request("claude-test", "http://x/v1", None, messages, [], stream=False)

    cache = {"cache_control": {"type": "ephemeral"}}
    assert body["system"] == [{"type": "text", "text": "You are terse.\n\nWork in /tmp.", **cache}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_1", "name": "terminal", "input": {"command": "ls"}},
            {"type": "tool_use", "id": "toolu_2", "name": "terminal", "input": {}},
            {"type": "tool_use", "id": "toolu_3", "name": "terminal", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "[error] invalid JSON"},
            {"type": "tool_result", "tool_use_id": "toolu_3", "content": "[error] not an object"},
            {"type": "text", "text": "and now?"},
        ]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_4", "name": "finish", "input": {"message": "ok"}, **cache},
        ]},
    ]


def test_empty_turns_are_left_out_so_roles_still_alternate() -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "still there?"},
    ]
    _, _, body = wire_anthropic.build_request("m", "http://x/v1", None, messages, [], stream=False)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "text", "text": "still there?", "cache_control": {"type": "ephemeral"}}]},
    ]


def test_tool_results_come_before_text_even_if_the_text_came_first() -> None:
    messages = [
        {"role": "assistant", "content": None, "tool_calls": [tool_call("t1", "terminal", "{}")]},
        {"role": "user", "content": "a message that arrived meanwhile"},
        {"role": "tool", "tool_call_id": "t1", "content": "done"},
    ]
    _, _, body = wire_anthropic.build_request("m", "http://x/v1", None, messages, [], stream=False)
    assert [block["type"] for block in body["messages"][1]["content"]] == ["tool_result", "text"]


def test_tools_become_input_schemas() -> None:
    _, _, body = wire_anthropic.build_request("m", "http://x/v1", None, USER, TOOL_SPECS, stream=False)
    assert [tool["name"] for tool in body["tools"]] == ["terminal", "finish"]
    terminal_tool = body["tools"][0]
    assert set(terminal_tool) == {"name", "description", "input_schema"}
    assert terminal_tool["input_schema"] == TOOL_SPECS[0]["function"]["parameters"]
    assert terminal_tool["description"] == TOOL_SPECS[0]["function"]["description"]


def test_url_headers_and_body_fields_without_a_key() -> None:
    url, headers, body = wire_anthropic.build_request("claude-test", "http://x/v1/", None, USER, [], stream=True)
    assert url == "http://x/v1/messages"
    assert headers == {"content-type": "application/json", "anthropic-version": "2023-06-01",
                       "accept-encoding": "identity"}
    assert body == {"model": "claude-test", "max_tokens": wire_anthropic.DEFAULT_MAX_TOKENS,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "list the files",
                                                               "cache_control": {"type": "ephemeral"}}]}],
                    "stream": True}


def test_the_key_goes_in_x_api_key() -> None:
    _, headers, body = wire_anthropic.build_request("m", "http://x/v1", "sk-ant", USER, [], stream=False)
    assert headers["x-api-key"] == "sk-ant"
    assert "authorization" not in {name.lower() for name in headers}
    assert "stream" not in body


# ---------------------------------------------------------------------------- reading, without HTTP


def test_usage_counts_the_whole_prompt_and_names_cache_reads_and_writes() -> None:
    usage = {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 200,
             "cache_creation_input_tokens": 30}
    assert wire_anthropic.read_usage(usage) == {"prompt_tokens": 240, "completion_tokens": 7,
                                                "cached_tokens": 200, "cache_write_tokens": 30}
    zero_cache = {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 0}
    assert wire_anthropic.read_usage(zero_cache) == {"prompt_tokens": 10, "completion_tokens": 7}
    assert wire_anthropic.read_usage(None) == {}


@pytest.mark.parametrize(("stop_reason", "expected"), [
    ("end_turn", "stop"), ("tool_use", "tool_calls"), ("max_tokens", "length"), ("stop_sequence", "stop"),
    ("refusal", "refusal"),
])
def test_stop_reasons_are_mapped(stop_reason: str, expected: str) -> None:
    partial = Partial()
    wire_anthropic.read_response({"content": [], "stop_reason": stop_reason}, partial)
    assert partial.finish_reason == expected


def test_a_response_without_content_is_an_error_not_worth_retrying() -> None:
    with pytest.raises(LLMError, match="without content") as caught:
        wire_anthropic.read_response({"type": "message", "role": "assistant"}, Partial())
    assert not caught.value.retryable


def test_stream_events_fold_into_the_partial() -> None:
    partial, ends = feed([
        {"type": "message_start", "message": {"usage": {"input_tokens": 50, "output_tokens": 1}}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "toolu_a", "name": "finish", "input": {}}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2,
         "content_block": {"type": "tool_use", "id": "toolu_b", "name": "terminal", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"comm'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": 'and": 1}'}},
        {"type": "content_block_stop", "index": 2},
        {"type": "some_future_event", "index": 3},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 12, "cache_read_input_tokens": 40}},
        {"type": "message_stop"},
    ])
    assert ends == [False] * 13 + [True]
    assert partial.content == "Hi"
    assert [(c.id, c.name, c.arguments) for c in partial.tool_calls] == [
        ("toolu_a", "finish", "{}"), ("toolu_b", "terminal", '{"command": 1}'),
    ]
    assert partial.finish_reason == "tool_calls"
    assert partial.usage == {"prompt_tokens": 90, "completion_tokens": 12, "cached_tokens": 40}


@pytest.mark.parametrize(("error_type", "retryable"), [
    ("overloaded_error", True), ("api_error", True), ("rate_limit_error", True), ("invalid_request_error", False),
])
def test_an_error_event_raises(error_type: str, retryable: bool) -> None:
    event = {"type": "error", "error": {"type": error_type, "message": "something went wrong"}}
    with pytest.raises(LLMError, match="something went wrong") as caught:
        feed([event])
    assert caught.value.retryable is retryable


# ---------------------------------------------------------------------------- over HTTP


def test_streamed_text_arrives_in_pieces(serve: Callable[..., ScriptedServer]) -> None:
    server = serve({"content": "Hello from the scripted Claude.", "chunk_chars": 5})
    partial, deltas = call(server, stream=True)
    assert partial.content == "Hello from the scripted Claude."
    assert len(deltas) > 1 and all(kind == "text" for kind, _ in deltas)
    assert "".join(text for _, text in deltas) == partial.content
    assert partial.finish_reason == "stop" and partial.tool_calls == []


def test_streamed_tool_use_gives_valid_json_arguments(serve: Callable[..., ScriptedServer]) -> None:
    arguments = {"command": "grep -rn 'needle' . | head -n 20"}
    server = serve({"tool_calls": [{"name": "terminal", "arguments": arguments, "id": "toolu_x"}],
                    "chunk_chars": 3})
    partial, _ = call(server, stream=True)
    assert [(c.id, c.name) for c in partial.tool_calls] == [("toolu_x", "terminal")]
    assert json.loads(partial.tool_calls[0].arguments) == arguments
    assert partial.finish_reason == "tool_calls"


@pytest.mark.parametrize("stream", [True, False])
def test_thinking_becomes_reasoning(serve: Callable[..., ScriptedServer], stream: bool) -> None:
    server = serve({"reasoning": "The user wants a listing.", "content": "Sure.", "chunk_chars": 6})
    partial, deltas = call(server, stream=stream)
    assert (partial.reasoning, partial.content) == ("The user wants a listing.", "Sure.")
    if stream:
        assert "".join(text for kind, text in deltas if kind == "reasoning") == partial.reasoning


def test_a_whole_response_with_text_and_a_tool_call(serve: Callable[..., ScriptedServer]) -> None:
    server = serve({"content": "Let me look.",
                    "tool_calls": [{"name": "terminal", "arguments": {"command": "ls"}, "id": "toolu_9"}]})
    partial, deltas = call(server, stream=False)
    assert partial.content == "Let me look."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in partial.tool_calls] == [
        ("toolu_9", "terminal", {"command": "ls"}),
    ]
    assert partial.finish_reason == "tool_calls"
    assert deltas == []
    assert server.requests()[0].get("stream") is None


@pytest.mark.parametrize("stream", [True, False])
def test_usage_includes_cached_tokens(serve: Callable[..., ScriptedServer], stream: bool) -> None:
    server = serve({"content": "ok", "usage": {"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 60}})
    partial, _ = call(server, stream=stream)
    assert partial.usage == {"prompt_tokens": 160, "completion_tokens": 20, "cached_tokens": 60}


@pytest.mark.parametrize("status", [529, 500])
def test_server_errors_are_retryable_and_keep_the_message(serve: Callable[..., ScriptedServer], status: int) -> None:
    server = serve({"status": status, "error": "Overloaded, try later"})
    with pytest.raises(LLMError, match="Overloaded, try later") as caught:
        call(server, stream=True)
    assert caught.value.retryable and caught.value.status == status


def test_a_truncated_stream_is_an_error(serve: Callable[..., ScriptedServer]) -> None:
    server = serve({"content": "This answer will never be finished.", "chunk_chars": 4, "drop_after_chunks": 5})
    with pytest.raises(LLMError) as caught:
        call(server, stream=True)
    assert caught.value.kind == "stream" and caught.value.retryable


def test_a_malformed_stream_is_an_error(serve: Callable[..., ScriptedServer]) -> None:
    server = serve({"content": "x", "malformed": True})
    with pytest.raises(LLMError, match="malformed") as caught:
        call(server, stream=True)
    assert caught.value.kind == "stream"


def test_the_key_and_the_converted_messages_reach_the_server(serve: Callable[..., ScriptedServer]) -> None:
    server = serve({"content": "authorised", "expect_api_key": "k"}, {"content": "never", "expect_api_key": "k"})
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    partial, _ = call(server, stream=True, api_key="k", messages=messages)
    assert partial.content == "authorised"
    request = next(event for event in server.events() if event["event"] == "request")
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == "<redacted>"
    assert request["headers"]["anthropic-version"] == "2023-06-01"
    assert request["body"]["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert request["body"]["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "list the files", "cache_control": {"type": "ephemeral"}}]}]
    assert [tool["name"] for tool in request["body"]["tools"]] == ["terminal", "finish"]

    with pytest.raises(LLMError, match="401") as caught:
        call(server, stream=True, api_key=None)
    assert not caught.value.retryable


def test_a_whole_agent_run_against_the_anthropic_api(agent: Agent, serve: Callable[..., ScriptedServer]) -> None:
    server = serve(terminal("echo from-the-tool"), finish("the answer is 42"))
    result = agent("run", "-q", "-m", "anthropic/claude-test", "--base-url", server.url, "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "the answer is 42\n"
    first, second = server.requests()
    assert first["model"] == "claude-test" and first["system"]
    results = [block for message in second["messages"] if message["role"] == "user"
               for block in message["content"] if block["type"] == "tool_result"]
    assert len(results) == 1 and "from-the-tool" in results[0]["content"]
    assert results[0]["tool_use_id"] == second["messages"][1]["content"][-1]["id"]
