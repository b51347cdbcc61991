"""The OpenAI chat completions wire: POST /v1/chat/completions, answered whole or streamed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from supervisor.scripted_server import check_openai_chat
from supervisor.scripted_server.turn import Chunk, Turn, Wire, error_type


def finish_reason(turn: Turn) -> str:
    if turn.truncated:
        return "length"
    return "tool_calls" if turn.tool_calls else "stop"


def usage_body(usage: dict[str, int]) -> dict[str, Any]:
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    rendered: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if "cached_tokens" in usage:
        rendered["prompt_tokens_details"] = {"cached_tokens": usage["cached_tokens"]}
    if "reasoning_tokens" in usage:
        rendered["completion_tokens_details"] = {"reasoning_tokens": usage["reasoning_tokens"]}
    return rendered


def completion(turn: Turn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.content or None}
    if turn.reasoning:
        message["reasoning_content"] = turn.reasoning
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                **({"id": call.id} if call.id else {}),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call in turn.tool_calls
        ]
    return {
        "id": f"chatcmpl-scripted-{turn.n}",
        "object": "chat.completion",
        "created": turn.created,
        "model": turn.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(turn)}],
        "usage": usage_body(turn.usage),
    }


def stream(turn: Turn) -> list[Chunk]:
    def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": f"chatcmpl-scripted-{turn.n}",
            "object": "chat.completion.chunk",
            "created": turn.created,
            "model": turn.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if turn.include_usage:
            # OpenAI marks every chunk but the last with "usage": null when usage is requested.
            chunk["usage"] = None
        return turn.sse_data(chunk)

    chunks = [Chunk(frame({"role": "assistant", "content": "" if turn.content else None}), False)]
    chunks += [Chunk(frame({"reasoning_content": p}), True) for p in turn.pieces(turn.reasoning)]
    chunks += [Chunk(frame({"content": p}), True) for p in turn.pieces(turn.content)]
    for index, call in enumerate(turn.tool_calls):
        opening = {
            "index": index,
            **({"id": call.id} if call.id else {}),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        chunks.append(Chunk(frame({"tool_calls": [opening]}), False))
        chunks += [
            Chunk(frame({"tool_calls": [{"index": index, "function": {"arguments": p}}]}), True)
            for p in turn.pieces(call.arguments_json)
        ]
    chunks.append(Chunk(frame({}, finish_reason(turn)), False))
    if turn.include_usage:
        usage_chunk = {
            "id": f"chatcmpl-scripted-{turn.n}",
            "object": "chat.completion.chunk",
            "created": turn.created,
            "model": turn.model,
            "choices": [],
            "usage": usage_body(turn.usage),
        }
        chunks.append(Chunk(turn.sse_data(usage_chunk), False))
    chunks.append(Chunk(b"data: [DONE]\n\n", False))
    return chunks


def malformed_stream() -> list[Chunk]:
    return [Chunk(b"data: {not json\n\n", False), Chunk(b"data: [DONE]\n\n", False)]


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": None, "code": None}}


def stream_error(kind: str, message: str) -> Chunk:
    """An error in the middle of a stream, as OpenAI sends it: a data event with an error object."""
    error = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return Chunk(b"data: " + json.dumps(error).encode() + b"\n\n", False)


def has_api_key(headers: Mapping[str, str], key: str) -> bool:
    return headers.get("Authorization") == f"Bearer {key}"


WIRE = Wire(
    name="openai",
    routes=("/v1/chat/completions", "/chat/completions"),
    tool_id_prefix="call_",
    prompt_keys=("messages",),
    render_body=completion,
    render_stream=stream,
    malformed_stream=malformed_stream,
    malformed_body=b'{"id": "malformed", "choices": [{"message": ',
    error_body=error_body,
    stream_error=stream_error,
    has_api_key=has_api_key,
    check_request=check_openai_chat.problems,
)
