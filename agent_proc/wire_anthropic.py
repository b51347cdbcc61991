"""The Anthropic Messages API wire format: requests out, responses and stream events in.

Pure functions over plain dicts; `llm` does the HTTP. Messages inside the project are in
the OpenAI chat format, so building a request means translating: system messages move to
a top-level field, tool calls and their results become content blocks, and neighbouring
messages of one role are merged because Anthropic wants user and assistant to alternate.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_proc.llm import OnDelta, Partial, ToolCall
    from agent_proc.reasoning import RequestReasoning

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 8192

# Anthropic's stop reasons in the project's (OpenAI's) words; others are kept as they are.
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


# ---------------------------------------------------------------------------- requests


CACHE_BREAKPOINT = {"type": "ephemeral"}

# What a model_message's reasoning items are tagged with when they came from this API.
REASONING_API = "anthropic"
THINKING_BLOCKS = ("thinking", "redacted_thinking")


def build_request(
    model: str, base_url: str, api_key: str | None, messages: list[dict[str, Any]],
    tools: list[dict[str, Any]], stream: bool, *, max_output_tokens: int | None = None,
    reasoning: RequestReasoning | None = None,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body of one Messages API call."""
    headers = {"content-type": "application/json", "anthropic-version": API_VERSION, "accept-encoding": "identity"}
    if api_key:
        headers["x-api-key"] = api_key
    system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system" and _has_text(m.get("content")))
    converted = convert_messages(messages)
    # An agent resends its whole history every turn; Anthropic caches a prefix only up to
    # the breakpoints a request marks. Marking the system prompt and the newest block makes
    # each turn read the previous turns from the cache (billed at about a tenth).
    if converted:
        converted[-1]["content"][-1]["cache_control"] = CACHE_BREAKPOINT
    body: dict[str, Any] = {"model": model, "max_tokens": max_output_tokens or DEFAULT_MAX_TOKENS,
                            "messages": converted}
    if reasoning is not None:
        _add_thinking(body, reasoning)
    if system:
        body["system"] = [{"type": "text", "text": system, "cache_control": CACHE_BREAKPOINT}]
    if tools:
        body["tools"] = [convert_tool(tool) for tool in tools]
    if stream:
        body["stream"] = True
    return base_url.rstrip("/") + "/messages", headers, body


def _add_thinking(body: dict[str, Any], reasoning: RequestReasoning) -> None:
    """Turn thinking on (or off) as the run's settings say, with max_tokens above the thinking budget.

    A tool loop that began without thinking cannot switch it on halfway: the API wants the assistant
    message before the tool results to start with a thinking block. Such a request goes without
    thinking, as the API itself would treat it; the next turn thinks again.
    """
    if reasoning.thinking is None:
        return
    if reasoning.thinking["type"] != "disabled" and _in_tool_loop_without_thinking(body["messages"]):
        return
    body["thinking"] = dict(reasoning.thinking)
    if reasoning.output_effort is not None:
        body["output_config"] = {"effort": reasoning.output_effort}
    if reasoning.min_output_tokens is not None:
        body["max_tokens"] = max(body["max_tokens"], reasoning.min_output_tokens)


def _in_tool_loop_without_thinking(converted: list[dict[str, Any]]) -> bool:
    if not converted or converted[-1]["role"] != "user":
        return False
    if not any(block["type"] == "tool_result" for block in converted[-1]["content"]):
        return False
    assistant = next((m for m in reversed(converted) if m["role"] == "assistant"), None)
    return assistant is not None and assistant["content"][0]["type"] not in THINKING_BLOCKS


def convert_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The non-system messages as Anthropic messages, each a list of content blocks."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            blocks = _assistant_blocks(message)
        elif role == "tool":
            blocks = [{"type": "tool_result", "tool_use_id": message.get("tool_call_id") or ""}]
            if _has_text(message.get("content")):
                blocks[0]["content"] = message["content"]
            role = "user"
        elif role == "user":
            blocks = _text_blocks(message.get("content"))
        else:
            continue
        # An empty block is refused by the API and a message without blocks would break the alternation.
        if not blocks:
            continue
        if converted and converted[-1]["role"] == role:
            converted[-1]["content"].extend(blocks)
        else:
            converted.append({"role": role, "content": blocks})
    for message in converted:
        if message["role"] == "user":
            # The API requires a message's tool results to come before any text in it.
            message["content"].sort(key=lambda block: block["type"] != "tool_result")
    # A final assistant message is a prefill, which the API refuses if it ends in whitespace.
    if converted and converted[-1]["role"] == "assistant" and converted[-1]["content"][-1]["type"] == "text":
        converted[-1]["content"][-1]["text"] = converted[-1]["content"][-1]["text"].rstrip()
    return converted


def _has_text(content: Any) -> bool:
    return isinstance(content, str) and bool(content.strip())


def _text_blocks(content: str | None) -> list[dict[str, Any]]:
    """The text as a block; none for empty or whitespace-only text (models often send "\\n\\n"
    before a tool call), which the API refuses."""
    return [{"type": "text", "text": content}] if _has_text(content) else []


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    # Signed thinking blocks go back first and unchanged, as they came: the API checks their signatures.
    blocks = [dict(item) for item in message.get("reasoning_items") or []
              if message.get("reasoning_api") == REASONING_API and item.get("type") in THINKING_BLOCKS]
    blocks += _text_blocks(message.get("content"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or "",
                       "input": _tool_input(function.get("arguments"))})
    return blocks


def _tool_input(arguments: str | None) -> dict[str, Any]:
    """The arguments a model wrote, as the object Anthropic insists on.

    A model's malformed arguments were already answered with an error result; sending
    them back as `{}` keeps the history valid without hiding that exchange.
    """
    try:
        parsed = json.loads(arguments or "")
    except (ValueError, TypeError, RecursionError):  # RecursionError: nested too deeply to parse
        return {}
    return parsed if isinstance(parsed, dict) else {}


def convert_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function spec as an Anthropic tool definition."""
    function = tool.get("function") or {}
    converted: dict[str, Any] = {
        "name": function.get("name") or "",
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


# ---------------------------------------------------------------------------- responses


def read_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """The token counts we keep, from an Anthropic `usage` object.

    Anthropic's `input_tokens` leaves out the tokens read from or written to the cache;
    the project's `prompt_tokens` counts the whole prompt, as OpenAI's does.
    """
    if not usage:
        return {}
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_write = usage.get("cache_creation_input_tokens") or 0
    out = {
        "prompt_tokens": (usage.get("input_tokens") or 0) + cache_read + cache_write,
        "completion_tokens": usage.get("output_tokens") or 0,
    }
    if cache_read > 0:
        out["cached_tokens"] = cache_read
    if cache_write > 0:
        out["cache_write_tokens"] = cache_write
    return out


def finish_reason(stop_reason: str) -> str:
    """Anthropic's `stop_reason` in the project's words."""
    return FINISH_REASONS.get(stop_reason, stop_reason)


def read_response(doc: dict[str, Any], partial: Partial) -> None:
    """Fill `partial` from a whole (non-streamed) response."""
    from agent_proc.llm import LLMError

    blocks = doc.get("content") if isinstance(doc, dict) else None
    if not isinstance(blocks, list):
        raise LLMError(f"the model API answered without content: {str(doc)[:200]}", retryable=False,
                       kind="response")
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            partial.content += block.get("text") or ""
        elif kind == "thinking":
            partial.reasoning += block.get("thinking") or ""
            if block.get("signature"):
                partial.reasoning_items.append(block)
        elif kind == "redacted_thinking":
            partial.reasoning_items.append(block)
        elif kind == "tool_use":
            index = len(partial.tool_calls)
            slot = partial.tool_call(index)
            slot.id = block.get("id") or ""  # a missing id is given one by llm.call_once
            slot.name = block.get("name") or ""
            slot.arguments = json.dumps(block.get("input") or {})
    partial.finish_reason = finish_reason(doc.get("stop_reason") or "end_turn")
    partial.usage = read_usage(doc.get("usage"))


def read_stream_event(event: dict[str, Any], partial: Partial, on_delta: OnDelta) -> bool:
    """Fold one stream event into `partial`; True when it ends the stream (`message_stop`).

    `partial.wire_state` keeps the usage seen so far and which content block is which
    tool call, since deltas name only the block's index.
    """
    kind = event.get("type")
    state = partial.wire_state
    if kind == "message_start":
        state["usage"] = dict((event.get("message") or {}).get("usage") or {})
        partial.usage = read_usage(state["usage"])
    elif kind == "content_block_start":
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            tool_blocks = state.setdefault("tool_blocks", {})
            tool_blocks[event.get("index")] = index = len(tool_blocks)
            slot = partial.tool_call(index)
            slot.id = block.get("id") or ""
            slot.name = block.get("name") or ""
        elif block.get("type") == "text" and block.get("text"):
            _add_text(partial, on_delta, block["text"])
        elif block.get("type") in THINKING_BLOCKS:
            # Kept whole until the block stops: only a finished, signed block may go back to the API.
            state.setdefault("thinking_blocks", {})[event.get("index")] = dict(block)
            if block.get("thinking"):
                _add_reasoning(partial, on_delta, block["thinking"])
    elif kind == "content_block_delta":
        delta = event.get("delta") or {}
        thinking = state.get("thinking_blocks", {}).get(event.get("index"))
        if delta.get("type") == "text_delta":
            _add_text(partial, on_delta, delta.get("text") or "")
        elif delta.get("type") == "thinking_delta":
            if thinking is not None:
                from agent_proc.llm import join_text

                thinking["thinking"] = join_text(thinking.get("thinking") or "", delta.get("thinking") or "")
            _add_reasoning(partial, on_delta, delta.get("thinking") or "")
        elif delta.get("type") == "signature_delta" and thinking is not None:
            thinking["signature"] = (thinking.get("signature") or "") + (delta.get("signature") or "")
        elif delta.get("type") == "input_json_delta" and (slot := _tool_slot(partial, event)) is not None:
            from agent_proc.llm import join_text

            slot.arguments = join_text(slot.arguments, delta.get("partial_json") or "")
    elif kind == "content_block_stop":
        # A tool called without arguments streams no JSON at all.
        if (slot := _tool_slot(partial, event)) is not None and not slot.arguments:
            slot.arguments = "{}"
        thinking = state.get("thinking_blocks", {}).pop(event.get("index"), None)
        if thinking is not None and (thinking["type"] == "redacted_thinking" or thinking.get("signature")):
            partial.reasoning_items.append(thinking)
    elif kind == "message_delta":
        if stop_reason := (event.get("delta") or {}).get("stop_reason"):
            partial.finish_reason = finish_reason(stop_reason)
        # The counts here are cumulative and may restate the input side too.
        counts = {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
        state["usage"] = {**state.get("usage", {}), **counts}
        partial.usage = read_usage(state["usage"])
    elif kind == "message_stop":
        return True
    elif kind == "error":
        from agent_proc.llm import stream_error

        raise stream_error(event.get("error") or {})
    return False


def _tool_slot(partial: Partial, event: dict[str, Any]) -> ToolCall | None:
    """The tool call that the event's content block carries, if it carries one."""
    index = partial.wire_state.get("tool_blocks", {}).get(event.get("index"))
    return None if index is None else partial.tool_calls[index]


def _add_text(partial: Partial, on_delta: OnDelta, text: str) -> None:
    if text and (shown := partial.add_text("text", text)):
        on_delta("text", shown)


def _add_reasoning(partial: Partial, on_delta: OnDelta, text: str) -> None:
    if text and (shown := partial.add_text("reasoning", text)):
        on_delta("reasoning", shown)
