"""The OpenAI Responses API wire format (`POST /v1/responses`): requests out, responses and stream events in.

Pure functions over plain dicts; `llm` does the HTTP. The Responses API is how OpenAI's
reasoning models show their reasoning while they think: a summary of it streams before
the answer, and the reasoning itself comes back encrypted, to be sent back on later turns
so the model keeps its chain of thought across tool calls. The agent asks for exactly
that and keeps nothing on OpenAI's side: every request is stateless (`store: false`) and
carries the whole history, reasoning items included.

Messages inside the project are in the chat format; building a request turns them into
input items: system messages into `instructions`, an assistant message into its reasoning
items, its text and its `function_call`s, a tool result into a `function_call_output`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent_proc.wire_openai import bearer_headers

if TYPE_CHECKING:
    from agent_proc.llm import OnDelta, Partial
    from agent_proc.reasoning import RequestReasoning

# What a model_message's reasoning items are tagged with when they came from this API.
REASONING_API = "openai_responses"
# The fields of a reasoning item that go back to the API; the others (status, ...) describe the output only.
_REASONING_ITEM_FIELDS = ("type", "id", "summary", "encrypted_content")
# Why an incomplete response stopped, in the project's (chat completions') words.
_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


# ---------------------------------------------------------------------------- requests


def build_request(
    model: str, base_url: str, api_key: str | None, messages: list[dict[str, Any]],
    tools: list[dict[str, Any]], stream: bool, *, max_output_tokens: int | None = None,
    reasoning: RequestReasoning | None = None,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body of one Responses API call."""
    headers = bearer_headers(api_key)
    body: dict[str, Any] = {"model": model, "input": convert_messages(messages), "store": False}
    instructions = "\n\n".join(m.get("content") or "" for m in messages if m.get("role") == "system")
    if instructions:
        body["instructions"] = instructions
    if tools:
        body["tools"] = [convert_tool(tool) for tool in tools]
        body["tool_choice"] = "auto"
    if max_output_tokens is not None:
        body["max_output_tokens"] = max_output_tokens  # reasoning included, as on every OpenAI API
    if reasoning is not None and (reasoning.effort is not None or reasoning.summaries):
        body["reasoning"] = {}
        if reasoning.effort is not None:
            body["reasoning"]["effort"] = reasoning.effort
        if reasoning.summaries:
            body["reasoning"]["summary"] = "auto"
            # Without storage on OpenAI's side, the reasoning can only come back to the model this way.
            body["include"] = ["reasoning.encrypted_content"]
    if stream:
        body["stream"] = True
    return base_url.rstrip("/") + "/responses", headers, body


def convert_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The non-system chat messages as Responses API input items."""
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "user" and message.get("content"):
            items.append({"role": "user", "content": message["content"]})
        elif role == "assistant":
            items += _assistant_items(message)
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": message.get("tool_call_id") or "",
                          "output": message.get("content") or ""})
    return items


def _assistant_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    items = []
    if message.get("content"):
        items.append({"role": "assistant", "content": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        items.append({"type": "function_call", "call_id": call.get("id") or "", "name": function.get("name") or "",
                      "arguments": function.get("arguments") or "{}"})
    # The reasoning goes first, and only with what it led to: the API refuses a reasoning item on its own.
    if items and message.get("reasoning_api") == REASONING_API:
        reasoning = [{k: item[k] for k in _REASONING_ITEM_FIELDS if k in item}
                     for item in message.get("reasoning_items") or [] if item.get("type") == "reasoning"]
        items = reasoning + items
    return items


def convert_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions function spec as a Responses API tool: the same fields, one level up."""
    function = tool.get("function") or {}
    converted: dict[str, Any] = {
        "type": "function",
        "name": function.get("name") or "",
        "parameters": function.get("parameters") or {"type": "object", "properties": {}},
        # Strict mode (the Responses default) wants every property required; ours have optional ones.
        "strict": False,
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


# ---------------------------------------------------------------------------- responses


def read_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """The token counts we keep, from a Responses API `usage` object."""
    if not usage:
        return {}
    out = {"prompt_tokens": usage.get("input_tokens") or 0, "completion_tokens": usage.get("output_tokens") or 0}
    if cached := (usage.get("input_tokens_details") or {}).get("cached_tokens"):
        out["cached_tokens"] = cached
    if reasoning := (usage.get("output_tokens_details") or {}).get("reasoning_tokens"):
        out["reasoning_tokens"] = reasoning
    return out


def read_response(doc: dict[str, Any], partial: Partial) -> None:
    """Fill `partial` from a whole (non-streamed) response."""
    from agent_proc.llm import LLMError

    output = doc.get("output")
    if not isinstance(output, list):
        raise LLMError(f"the model API answered without output: {str(doc)[:200]}", retryable=False, kind="response")
    if doc.get("status") == "failed":
        _raise_failed(doc)
    for item in output:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "reasoning":
            summary = "\n\n".join(_summary_texts(item))
            partial.reasoning += ("\n\n" if partial.reasoning and summary else "") + summary
            _keep_reasoning_item(partial, item)
        elif item.get("type") == "message":
            partial.content += "".join(part.get("text") or "" for part in item.get("content") or []
                                       if isinstance(part, dict) and part.get("type") == "output_text")
        elif item.get("type") == "function_call":
            slot = partial.tool_call(len(partial.tool_calls))
            slot.id = item.get("call_id") or ""
            slot.name = item.get("name") or ""
            slot.arguments = item.get("arguments") or "{}"
    partial.finish_reason = _finish_reason(doc, partial)
    partial.usage = read_usage(doc.get("usage"))


def read_stream_event(event: dict[str, Any], partial: Partial, on_delta: OnDelta) -> bool:
    """Fold one stream event into `partial`; True when it ends the stream (`response.completed`,
    `response.incomplete`). The Responses API sends no `[DONE]`.

    `partial.wire_state` maps each function call's output index to its slot, since argument
    deltas name only the item.
    """
    kind = event.get("type")
    calls: dict[Any, int] = partial.wire_state.setdefault("calls", {})
    if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
        _stream(partial, on_delta, "reasoning", event.get("delta") or "")
    elif kind == "response.reasoning_summary_part.added" and partial.reasoning:
        _stream(partial, on_delta, "reasoning", "\n\n")  # a new paragraph of the summary
    elif kind == "response.output_text.delta":
        _stream(partial, on_delta, "text", event.get("delta") or "")
    elif kind == "response.output_item.added" and (event.get("item") or {}).get("type") == "function_call":
        item = event["item"]
        calls[event.get("output_index")] = index = len(partial.tool_calls)
        slot = partial.tool_call(index)
        slot.id, slot.name = item.get("call_id") or "", item.get("name") or ""
        slot.arguments = item.get("arguments") or ""
    elif kind == "response.function_call_arguments.delta" and event.get("output_index") in calls:
        from agent_proc.llm import join_text

        slot = partial.tool_calls[calls[event["output_index"]]]
        slot.arguments = join_text(slot.arguments, event.get("delta") or "")
    elif kind == "response.output_item.done":
        item = event.get("item") or {}
        if item.get("type") == "reasoning":
            _keep_reasoning_item(partial, item)
        elif item.get("type") == "function_call" and event.get("output_index") in calls:
            # The finished item is the authority on the arguments, whatever the deltas added up to.
            partial.tool_calls[calls[event["output_index"]]].arguments = item.get("arguments") or "{}"
    elif kind in ("response.completed", "response.incomplete"):
        response = event.get("response") or {}
        partial.usage = read_usage(response.get("usage"))
        partial.finish_reason = _finish_reason(response, partial)
        return True
    elif kind == "response.failed":
        _raise_failed(event.get("response") or {})
    elif kind == "error":
        _raise_stream_error(event)
    return False


def _keep_reasoning_item(partial: Partial, item: dict[str, Any]) -> None:
    # Without its encrypted content a reasoning item means nothing to a stateless API: it is not kept.
    if item.get("encrypted_content"):
        partial.reasoning_items.append({k: item[k] for k in _REASONING_ITEM_FIELDS if k in item})


def _summary_texts(item: dict[str, Any]) -> list[str]:
    return [part.get("text") or "" for part in item.get("summary") or [] if isinstance(part, dict)]


def _finish_reason(response: dict[str, Any], partial: Partial) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason") or "incomplete"
        return _INCOMPLETE_REASONS.get(reason, reason)
    return "tool_calls" if partial.tool_calls else "stop"


def _stream(partial: Partial, on_delta: OnDelta, kind: str, text: str) -> None:
    if text and (shown := partial.add_text(kind, text)):
        on_delta(kind, shown)


def _raise_failed(response: dict[str, Any]) -> None:
    from agent_proc.llm import stream_error

    raise stream_error(response.get("error") or "the response failed")


def _raise_stream_error(event: dict[str, Any]) -> None:
    from agent_proc.llm import stream_error

    # The error event carries its fields at the top level; some servers nest them under "error".
    raise stream_error(event["error"] if isinstance(event.get("error"), dict) else event)
