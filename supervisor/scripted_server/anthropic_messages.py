"""The Anthropic messages wire: POST /v1/messages, answered whole or streamed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from supervisor.scripted_server import check_anthropic_messages, check_anthropic_thinking, signing
from supervisor.scripted_server.turn import Chunk, Turn, Wire, error_type


def stop_reason(turn: Turn) -> str:
    if turn.truncated:
        return "max_tokens"
    return "tool_use" if turn.tool_calls else "end_turn"


def usage_body(usage: dict[str, int], output_tokens: int | None = None) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "input_tokens": usage["prompt_tokens"],
        "output_tokens": usage["completion_tokens"] if output_tokens is None else output_tokens,
    }
    if "cached_tokens" in usage:
        rendered["cache_read_input_tokens"] = usage["cached_tokens"]
    return rendered


def blocks(turn: Turn) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    if turn.redacted_thinking:
        # Thinking the safety systems flagged: encrypted, to be sent back as it came.
        rendered.append({"type": "redacted_thinking", "data": signing.seal({"redacted": f"msg_scripted_{turn.n}"})})
    if turn.reasoning:
        rendered.append({"type": "thinking", "thinking": turn.reasoning, "signature": signing.sign(turn.reasoning)})
    if turn.content:
        rendered.append({"type": "text", "text": turn.content})
    for call in turn.tool_calls:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments_object}
        if not call.id:
            del block["id"]
        # Streamed arguments are sent as the text the step gives, valid JSON or not.
        rendered.append({**block, "arguments_json": call.arguments_json})
    return rendered


def message(turn: Turn) -> dict[str, Any]:
    return {
        "id": f"msg_scripted_{turn.n}",
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": [{k: v for k, v in block.items() if k != "arguments_json"} for block in blocks(turn)],
        "stop_reason": stop_reason(turn),
        "stop_sequence": None,
        "usage": usage_body(turn.usage),
    }


def block_stream(block: dict[str, Any], turn: Turn) -> tuple[dict[str, Any], list[dict]]:
    """Split a finished content block into its empty opening form and its deltas."""
    if block["type"] == "thinking":
        # The signature comes last, once the thinking is whole: a block cut off before it has none.
        deltas = [{"type": "thinking_delta", "thinking": p} for p in turn.pieces(block["thinking"])]
        return {**block, "thinking": "", "signature": ""}, [*deltas, {"type": "signature_delta",
                                                                        "signature": block["signature"]}]
    if block["type"] == "text":
        return {**block, "text": ""}, [{"type": "text_delta", "text": p} for p in turn.pieces(block["text"])]
    if block["type"] == "redacted_thinking":
        return block, []  # whole in its opening event, as the API sends it
    opening = {k: v for k, v in block.items() if k != "arguments_json"}
    deltas = [{"type": "input_json_delta", "partial_json": p} for p in turn.pieces(block["arguments_json"])]
    return {**opening, "input": {}}, deltas


def stream(turn: Turn) -> list[Chunk]:
    def event(name: str, **fields: Any) -> bytes:
        return turn.sse_event(name, {"type": name, **fields})

    opening_message = {
        **message(turn),
        "content": [],
        "stop_reason": None,
        "usage": usage_body(turn.usage, output_tokens=0),
    }
    chunks = [Chunk(event("message_start", message=opening_message), False), Chunk(event("ping"), False)]
    for index, block in enumerate(blocks(turn)):
        start, deltas = block_stream(block, turn)
        chunks.append(Chunk(event("content_block_start", index=index, content_block=start), False))
        chunks += [Chunk(event("content_block_delta", index=index, delta=d), True) for d in deltas]
        chunks.append(Chunk(event("content_block_stop", index=index), False))
    closing_delta = {"stop_reason": stop_reason(turn), "stop_sequence": None}
    output_usage = {"output_tokens": turn.usage["completion_tokens"]}
    chunks.append(Chunk(event("message_delta", delta=closing_delta, usage=output_usage), False))
    chunks.append(Chunk(event("message_stop"), False))
    return chunks


def malformed_stream() -> list[Chunk]:
    return [Chunk(b"event: message_start\ndata: {not json\n\n", False)]


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def stream_error(kind: str, message: str) -> Chunk:
    """An error in the middle of a stream, as Anthropic sends it: an `error` event."""
    payload = {"type": "error", "error": {"type": kind, "message": message}}
    return Chunk(f"event: error\ndata: {json.dumps(payload)}\n\n".encode(), False)


def has_api_key(headers: Mapping[str, str], key: str) -> bool:
    return headers.get("x-api-key") == key


WIRE = Wire(
    name="anthropic",
    routes=("/v1/messages", "/messages"),
    tool_id_prefix="toolu_",
    prompt_keys=("messages", "system"),
    render_body=message,
    render_stream=stream,
    malformed_stream=malformed_stream,
    malformed_body=b'{"id": "malformed", "content": [{"type": ',
    error_body=error_body,
    stream_error=stream_error,
    has_api_key=has_api_key,
    check_request=lambda body: check_anthropic_messages.problems(body) + check_anthropic_thinking.problems(body),
)
