"""The strict request checker for the OpenAI Responses API wire, written from the API reference.

Beyond the shape of each field, it checks what the API checks of a stateless conversation
(`store: false`): a reasoning item must carry the encrypted content the API gave out, unchanged,
and be followed by the output item it led to; every function call must be answered by exactly
one `function_call_output`, after it.
"""

from __future__ import annotations

from typing import Any

from supervisor.scripted_server import signing
from supervisor.scripted_server.checking import tool_name_problem, unknown_keys

_KNOWN_KEYS = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "reasoning", "include",
    "store", "stream", "max_output_tokens", "temperature", "top_p", "metadata", "previous_response_id", "text",
    "truncation", "user", "service_tier", "prompt_cache_key", "safety_identifier",
})
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
_SUMMARIES = frozenset({"auto", "concise", "detailed"})
_INCLUDES = frozenset({"reasoning.encrypted_content", "message.output_text.logprobs", "file_search_call.results",
                       "web_search_call.action.sources", "code_interpreter_call.outputs"})
_ROLES = frozenset({"user", "assistant", "system", "developer"})


def problems(body: dict[str, Any]) -> list[str]:
    """Return what a strict API would reject in this request body, in order; [] when nothing."""
    found = unknown_keys("", body, _KNOWN_KEYS)
    if not isinstance(body.get("model"), str) or not body["model"]:
        found.append("Missing required parameter: 'model'.")
    found += _reasoning_problems(body)
    found += _tool_problems(body.get("tools"))
    limit = body.get("max_output_tokens")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 16):
        found.append(f"Invalid 'max_output_tokens': integer below minimum value 16 ({limit!r}).")
    items = body.get("input")
    if isinstance(items, str):
        return found
    if not isinstance(items, list) or not items:
        return [*found, "Invalid 'input': expected a string or a non-empty array of items."]
    return found + _item_problems(items, stored=body.get("store") is not False)


def _reasoning_problems(body: dict[str, Any]) -> list[str]:
    found = []
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict) or set(reasoning) - {"effort", "summary", "generate_summary"}:
            found.append(f"Invalid 'reasoning': {reasoning!r}.")
        else:
            if reasoning.get("effort") is not None and reasoning["effort"] not in _EFFORTS:
                found.append(f"Invalid value for 'reasoning.effort': {reasoning['effort']!r}.")
            if reasoning.get("summary") is not None and reasoning["summary"] not in _SUMMARIES:
                found.append(f"Invalid value for 'reasoning.summary': {reasoning['summary']!r}.")
    include = body.get("include")
    if include is not None and (not isinstance(include, list) or not set(include) <= _INCLUDES):
        found.append(f"Invalid 'include': {include!r}.")
    return found


def _tool_problems(tools: Any) -> list[str]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        return ["Invalid 'tools': expected an array."]
    found = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            found.append(f"Invalid '{where}': expected a function tool.")
            continue
        if "function" in tool:  # the chat completions shape, which this API refuses
            found.append(f"Unknown parameter: '{where}.function'.")
        if problem := tool_name_problem(where, tool.get("name")):
            found.append(problem)
        if not isinstance(tool.get("parameters"), dict):
            found.append(f"Missing required parameter: '{where}.parameters'.")
    return found


def _item_problems(items: list[Any], *, stored: bool) -> list[str]:
    found: list[str] = []
    calls: dict[str, int] = {}  # call_id -> how many outputs answered it
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            found.append(f"Invalid '{where}': expected an object.")
            continue
        kind = item.get("type", "message")
        if kind == "message":
            found += _message_problems(where, item)
        elif kind == "reasoning":
            found += _reasoning_item_problems(where, item, items[index + 1:], stored=stored)
        elif kind == "function_call":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id or call_id in calls:
                found.append(f"Invalid '{where}.call_id': {call_id!r} is missing or used twice.")
            else:
                calls[call_id] = 0
            if not isinstance(item.get("name"), str) or not isinstance(item.get("arguments"), str):
                found.append(f"Invalid '{where}': a function_call needs a name and arguments as a string.")
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in calls:
                found.append(f"No tool call found for function call output with call_id {call_id!r}.")
            else:
                calls[call_id] += 1
                if calls[call_id] > 1:
                    found.append(f"Duplicate function call output for call_id {call_id!r}.")
            if not isinstance(item.get("output"), str):
                found.append(f"Invalid '{where}.output': expected a string.")
        else:
            found.append(f"Invalid '{where}.type': {kind!r}.")
    found += [f"No tool output found for function call {call_id}." for call_id, n in calls.items() if n == 0]
    return found


def _message_problems(where: str, item: dict[str, Any]) -> list[str]:
    if item.get("role") not in _ROLES:
        return [f"Invalid '{where}.role': {item.get('role')!r}."]
    content = item.get("content")
    if isinstance(content, str):
        return [] if content else [f"Invalid '{where}.content': empty string."]
    if not isinstance(content, list) or not content:
        return [f"Invalid '{where}.content': expected a string or a non-empty array."]
    return [f"Invalid '{where}.content[{i}]'." for i, part in enumerate(content)
            if not isinstance(part, dict) or not isinstance(part.get("text", ""), str)]


def _reasoning_item_problems(where: str, item: dict[str, Any], after: list[Any], *, stored: bool) -> list[str]:
    found = []
    item_id = item.get("id")
    if not isinstance(item.get("summary"), list):
        found.append(f"Missing required parameter: '{where}.summary'.")
    sealed = signing.unseal(item.get("encrypted_content")) if item.get("encrypted_content") is not None else None
    if item.get("encrypted_content") is not None and (sealed is None or sealed.get("id") != item_id):
        found.append(f"The encrypted content for item {item_id} could not be verified.")
    elif item.get("encrypted_content") is None and not stored:
        found.append(f"Item with id '{item_id}' not found. Items are not persisted when `store` is set to false. "
                     "Try again with `store` set to true, or with the reasoning item's encrypted content.")
    # What the reasoning led to: the model's own message or a function call.
    following = next((x for x in after if isinstance(x, dict)), {})
    led_to = following.get("type") == "function_call" or (
        following.get("type", "message") == "message" and following.get("role") == "assistant")
    if not led_to:
        found.append(f"Item '{item_id}' of type 'reasoning' was provided without its required following item.")
    return found
