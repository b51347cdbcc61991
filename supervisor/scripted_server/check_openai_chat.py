"""The strict request checker for the OpenAI chat completions wire, written from the API reference."""

from __future__ import annotations

from typing import Any

from supervisor.scripted_server.checking import (
    is_blank,
    positive_int,
    tool_id_problem,
    tool_name_problem,
    unknown_keys,
)

TOP_LEVEL = frozenset({
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "stream", "stream_options", "max_tokens",
    "max_completion_tokens", "temperature", "top_p", "n", "stop", "presence_penalty", "frequency_penalty",
    "logit_bias", "logprobs", "top_logprobs", "user", "seed", "response_format", "reasoning_effort", "service_tier",
    "store", "metadata", "modalities", "audio", "prediction", "web_search_options", "verbosity",
    "prompt_cache_key", "safety_identifier",
})
ROLES = ("system", "developer", "user", "assistant", "tool")


def problems(body: dict[str, Any]) -> list[str]:
    """Return what a strict API would reject in this request body, in order; [] when nothing."""
    found = unknown_keys("", body, TOP_LEVEL)
    if is_blank(body.get("model")):
        found.append("model: a model name is required")
    for key in ("max_tokens", "max_completion_tokens"):
        if key in body and not positive_int(body[key]):
            found.append(f"{key}: must be an integer of at least 1")
    if "stream" in body and not isinstance(body["stream"], bool):
        found.append("stream: must be a boolean")
    if "stream_options" in body and body.get("stream") is not True:
        found.append("stream_options: only allowed when stream is true")
    found += _tools_problems(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        found.append("messages: at least one message is required")
    else:
        found += _messages_problems(messages)
    return found


def _tools_problems(body: dict[str, Any]) -> list[str]:
    tools = body.get("tools")
    found = []
    if "tool_choice" in body and not tools:
        found.append("tool_choice: only allowed when tools are specified")
    if tools is None:
        return found
    if not isinstance(tools, list) or not tools:
        return [*found, "tools: must be a non-empty list"]
    names: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            found.append(f"{where}: must be {{'type': 'function', 'function': {{...}}}}")
            continue
        if problem := tool_name_problem(f"{where}.function.name", function.get("name")):
            found.append(problem)
        elif function["name"] in names:
            found.append(f"{where}.function.name: tool names must be unique ({function['name']!r})")
        names.add(str(function.get("name")))
        if "parameters" in function and not isinstance(function["parameters"], dict):
            found.append(f"{where}.function.parameters: must be a JSON schema object")
    return found


def _messages_problems(messages: list[Any]) -> list[str]:
    found: list[str] = []
    # Ids of the last assistant message's tool calls that no tool message has answered yet.
    pending: list[str] = []
    answered: set[str] = set()
    seen_ids: set[str] = set()
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            role = message.get("role") if isinstance(message, dict) else None
            found.append(f"{where}.role: must be one of {', '.join(ROLES)}, not {role!r}")
            continue
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id in pending:
                pending.remove(call_id)
                answered.add(call_id)
            elif call_id in answered:
                found.append(f"{where}: a second tool message for tool_call_id {call_id!r}")
            else:
                found.append(f"{where}: messages with role 'tool' must be a response to a preceding message "
                             f"with 'tool_calls' (no open call has id {call_id!r})")
            if not isinstance(message.get("content"), (str, list)):
                found.append(f"{where}.content: a tool message needs content (a string)")
            continue
        if pending:
            found.append(f"{where}: an assistant message with 'tool_calls' must be followed by tool messages "
                         f"responding to each 'tool_call_id'; these had none: {', '.join(pending)}")
        pending, answered = [], set()
        if role == "assistant":
            calls = message.get("tool_calls")
            if calls is not None:
                pending = _tool_calls_problems(where, calls, found, seen_ids)
            if not calls and _text_is_blank(message.get("content")):
                found.append(f"{where}.content: an assistant message needs non-empty content unless it has "
                             "tool_calls (content null or empty without tool_calls)")
        elif _text_is_blank(message.get("content")):
            found.append(f"{where}.content: a {role} message needs non-empty, non-whitespace content")
    if pending:
        found.append(f"messages: an assistant message with 'tool_calls' must be followed by tool messages "
                     f"responding to each 'tool_call_id'; these had none: {', '.join(pending)}")
    return found


def _tool_calls_problems(where: str, calls: Any, found: list[str], seen_ids: set[str]) -> list[str]:
    """Check an assistant message's tool_calls; return the ids the next messages must answer."""
    if not isinstance(calls, list) or not calls:
        found.append(f"{where}.tool_calls: must be a non-empty list when present")
        return []
    ids = []
    for number, call in enumerate(calls):
        place = f"{where}.tool_calls[{number}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type") != "function":
            found.append(f"{place}: must be {{'id', 'type': 'function', 'function': {{'name', 'arguments'}}}}")
            continue
        if problem := tool_id_problem(f"{place}.id", call.get("id"), seen_ids):
            found.append(problem)
        if problem := tool_name_problem(f"{place}.function.name", function.get("name")):
            found.append(problem)
        if not isinstance(function.get("arguments"), str):
            found.append(f"{place}.function.arguments: must be a string of JSON")
        ids.append(call.get("id"))
    return ids


def _text_is_blank(content: Any) -> bool:
    """Whether a message's content (a string or a list of parts) has no text worth sending."""
    if isinstance(content, list):
        return not content or all(
            isinstance(part, dict) and part.get("type") == "text" and is_blank(part.get("text")) for part in content
        )
    return is_blank(content)
