"""The OpenAI Responses API wire: POST /v1/responses, answered whole or streamed.

A turn's output items come in the order a reasoning model produces them: the reasoning
item first (its summary streamed as `response.reasoning_summary_text.delta`, its reasoning
sealed in `encrypted_content`), then the message with the text, then one `function_call`
per tool call with its argument deltas, and `response.completed` with the usage last.
"""

from __future__ import annotations

import json
from typing import Any

from supervisor.scripted_server import check_openai_responses, openai_chat, signing
from supervisor.scripted_server.turn import Chunk, Turn, Wire


def reasoning_item(turn: Turn) -> dict[str, Any]:
    item_id = f"rs_scripted_{turn.n}"
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": turn.reasoning}],
        "encrypted_content": signing.seal({"id": item_id, "summary": turn.reasoning}),
    }


def output_items(turn: Turn) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if turn.reasoning:
        items.append(reasoning_item(turn))
    if turn.content:
        items.append({"id": f"msg_scripted_{turn.n}", "type": "message", "status": "completed", "role": "assistant",
                      "content": [{"type": "output_text", "text": turn.content, "annotations": []}]})
    for call in turn.tool_calls:
        items.append({"id": f"fc_{call.id}", "type": "function_call", "status": "completed", "call_id": call.id,
                      "name": call.name, "arguments": call.arguments_json})
    return items


def usage_body(turn: Turn) -> dict[str, Any]:
    usage = turn.usage
    reasoning_tokens = usage.get("reasoning_tokens", (len(turn.reasoning) + 3) // 4)
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": usage.get("cached_tokens", 0)},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
    }


def response(turn: Turn, status: str = "completed") -> dict[str, Any]:
    done = status == "completed"
    return {
        "id": f"resp_scripted_{turn.n}",
        "object": "response",
        "created_at": turn.created,
        "status": status,
        "model": turn.model,
        "output": output_items(turn) if done else [],
        "usage": usage_body(turn) if done else None,
        "store": False,
    }


def stream(turn: Turn) -> list[Chunk]:
    sequence = iter(range(1_000_000))

    def event(name: str, paced: bool = False, **fields: Any) -> Chunk:
        return Chunk(turn.sse_event(name, {"type": name, "sequence_number": next(sequence), **fields}), paced)

    chunks = [event("response.created", response=response(turn, "in_progress")),
              event("response.in_progress", response=response(turn, "in_progress"))]
    for index, item in enumerate(output_items(turn)):
        at = {"output_index": index}
        item_at = {"item_id": item["id"], **at}
        if item["type"] == "reasoning":
            chunks.append(event("response.output_item.added", item={**item, "summary": [],
                                                                     "encrypted_content": None}, **at))
            part = {"type": "summary_text", "text": ""}
            chunks.append(event("response.reasoning_summary_part.added", summary_index=0, part=part, **item_at))
            chunks += [event("response.reasoning_summary_text.delta", True, summary_index=0, delta=p, **item_at)
                       for p in turn.pieces(turn.reasoning)]
            chunks.append(event("response.reasoning_summary_text.done", summary_index=0, text=turn.reasoning,
                                **item_at))
            chunks.append(event("response.reasoning_summary_part.done", summary_index=0,
                                part={**part, "text": turn.reasoning}, **item_at))
        elif item["type"] == "message":
            chunks.append(event("response.output_item.added", item={**item, "status": "in_progress", "content": []},
                                **at))
            part = {"type": "output_text", "text": "", "annotations": []}
            chunks.append(event("response.content_part.added", content_index=0, part=part, **item_at))
            chunks += [event("response.output_text.delta", True, content_index=0, delta=p, **item_at)
                       for p in turn.pieces(turn.content)]
            chunks.append(event("response.output_text.done", content_index=0, text=turn.content, **item_at))
            chunks.append(event("response.content_part.done", content_index=0, part={**part, "text": turn.content},
                                **item_at))
        else:
            chunks.append(event("response.output_item.added",
                                item={**item, "status": "in_progress", "arguments": ""}, **at))
            chunks += [event("response.function_call_arguments.delta", True, delta=p, **item_at)
                       for p in turn.pieces(item["arguments"])]
            chunks.append(event("response.function_call_arguments.done", arguments=item["arguments"], **item_at))
        chunks.append(event("response.output_item.done", item=item, **at))
    chunks.append(event("response.completed", response=response(turn)))
    return chunks


def malformed_stream() -> list[Chunk]:
    return [Chunk(b"event: response.created\ndata: {not json\n\n", False)]


def stream_error(kind: str, message: str) -> Chunk:
    """An error in the middle of a stream, as the Responses API sends it: an `error` event."""
    payload = {"type": "error", "code": kind, "message": message, "param": None}
    return Chunk(f"event: error\ndata: {json.dumps(payload)}\n\n".encode(), False)


WIRE = Wire(
    name="openai_responses",
    routes=("/v1/responses", "/responses"),
    tool_id_prefix="call_",
    prompt_keys=("input", "instructions"),
    render_body=response,
    render_stream=stream,
    malformed_stream=malformed_stream,
    malformed_body=b'{"id": "malformed", "output": [{"type": ',
    error_body=openai_chat.error_body,
    stream_error=stream_error,
    has_api_key=openai_chat.has_api_key,
    check_request=check_openai_responses.problems,
)
