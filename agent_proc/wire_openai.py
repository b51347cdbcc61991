"""The OpenAI chat-completions wire format: requests out, responses and stream events in.

Pure functions over plain dicts; `llm` does the HTTP. Messages inside the project are
already in this format, so building a request is mostly packing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_proc.llm import OnDelta, Partial
    from agent_proc.reasoning import RequestReasoning

# Keys of the project's assistant messages that carry another API's reasoning items; never sent on this wire.
REASONING_KEYS = ("reasoning_items", "reasoning_api")


def bearer_headers(api_key: str | None) -> dict[str, str]:
    """The headers of a JSON request to an OpenAI API (chat completions or Responses)."""
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def build_request(
    model: str, base_url: str, api_key: str | None, messages: list[dict[str, Any]],
    tools: list[dict[str, Any]], stream: bool, *, max_output_tokens: int | None = None,
    reasoning: RequestReasoning | None = None,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body of one chat-completions call."""
    headers = bearer_headers(api_key)
    body: dict[str, Any] = {"model": model,
                            "messages": [_tidy(_without_reasoning(m)) for m in messages if _sendable(m)]}
    if max_output_tokens is not None:
        # OpenAI's current name; `max_tokens` is deprecated there and refused by its reasoning models.
        body["max_completion_tokens"] = max_output_tokens
    if tools:
        body["tools"] = tools
        body["tool_choice"] = "auto"
    if reasoning is not None and reasoning.effort is not None:
        body["reasoning_effort"] = reasoning.effort
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return base_url.rstrip("/") + "/chat/completions", headers, body


def _without_reasoning(message: dict[str, Any]) -> dict[str, Any]:
    if not any(key in message for key in REASONING_KEYS):
        return message
    return {k: v for k, v in message.items() if k not in REASONING_KEYS}


def _sendable(message: dict[str, Any]) -> bool:
    """Whether the API takes this message: never an assistant message with neither text nor tool calls."""
    if message.get("role") != "assistant" or message.get("tool_calls"):
        return True
    return bool((message.get("content") or "").strip())


def _tidy(message: dict[str, Any]) -> dict[str, Any]:
    """Whitespace a model sent before its tool calls goes back as no content at all."""
    if message.get("role") == "assistant" and message.get("tool_calls") and \
            not (message.get("content") or "").strip():
        return {**message, "content": None}
    return message


def read_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """The token counts we keep, from an OpenAI `usage` object."""
    if not usage:
        return {}
    out = {
        "prompt_tokens": usage.get("prompt_tokens") or 0,
        "completion_tokens": usage.get("completion_tokens") or 0,
    }
    if cached := (usage.get("prompt_tokens_details") or {}).get("cached_tokens"):
        out["cached_tokens"] = cached
    if reasoning := (usage.get("completion_tokens_details") or {}).get("reasoning_tokens"):
        out["reasoning_tokens"] = reasoning
    return out


def read_response(doc: dict[str, Any], partial: Partial) -> None:
    """Fill `partial` from a whole (non-streamed) response."""
    from agent_proc.llm import LLMError

    try:
        choice = doc["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise LLMError(f"the model API answered without a message: {str(doc)[:200]}", retryable=False) from None
    partial.content = message.get("content") or ""
    partial.reasoning = message.get("reasoning_content") or ""
    for index, call in enumerate(message.get("tool_calls") or []):
        slot = partial.tool_call(index)
        slot.id = call.get("id") or ""  # a missing id is given one by llm.call_once
        slot.name = (call.get("function") or {}).get("name") or ""
        slot.arguments = (call.get("function") or {}).get("arguments") or ""
    partial.finish_reason = choice.get("finish_reason") or "stop"
    partial.usage = read_usage(doc.get("usage"))


def read_stream_event(event: dict[str, Any], partial: Partial, on_delta: OnDelta) -> bool:
    """Fold one `chat.completion.chunk` into `partial`. The stream's end is the
    `[DONE]` sentinel, not an event, so this always returns False."""
    from agent_proc.llm import join_text

    if event.get("error"):
        from agent_proc.llm import stream_error

        raise stream_error(event["error"])
    if event.get("usage"):
        partial.usage = read_usage(event["usage"])
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or {}
        if (text := delta.get("reasoning_content") or delta.get("reasoning")) and \
                (shown := partial.add_text("reasoning", text)):
            on_delta("reasoning", shown)
        if (text := delta.get("content")) and (shown := partial.add_text("text", text)):
            on_delta("text", shown)
        for piece in delta.get("tool_calls") or []:
            slot = partial.tool_call(piece.get("index", 0))
            slot.id = piece.get("id") or slot.id
            function = piece.get("function") or {}
            slot.name += function.get("name") or ""
            slot.arguments = join_text(slot.arguments, function.get("arguments") or "")
        if choice.get("finish_reason"):
            partial.finish_reason = choice["finish_reason"]
    return False
