"""The strict request checker for the Anthropic messages wire, written from the API reference.

Stricter than the service where the service quietly repairs a request (it merges
neighbouring turns of one role): a client that relies on a repair is one change
away from a 400.
"""

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
    "model", "messages", "max_tokens", "system", "tools", "tool_choice", "stream", "metadata", "stop_sequences",
    "temperature", "top_p", "top_k", "thinking", "service_tier", "container", "mcp_servers", "context_management",
    "output_config",
})
BLOCK_TYPES = frozenset({"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"})
MAX_CACHE_BREAKPOINTS = 4


def problems(body: dict[str, Any]) -> list[str]:
    """Return what a strict API would reject in this request body, in order; [] when nothing."""
    found = unknown_keys("", body, TOP_LEVEL)
    if is_blank(body.get("model")):
        found.append("model: a model name is required")
    if not positive_int(body.get("max_tokens")):
        found.append("max_tokens: required, an integer of at least 1")
    if "stream" in body and not isinstance(body["stream"], bool):
        found.append("stream: must be a boolean")
    found += _system_problems(body.get("system"))
    found += _tools_problems(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        found.append("messages: at least one message is required")
    else:
        found += _messages_problems(messages)
    breakpoints = _cache_breakpoints(body)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        found.append(f"a maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided; "
                     f"found {breakpoints}")
    return found


def _system_problems(system: Any) -> list[str]:
    if system is None:
        return []
    if isinstance(system, str):
        return ["system: must not be empty or whitespace"] if is_blank(system) else []
    if not isinstance(system, list):
        return ["system: must be a string or a list of text blocks"]
    found = []
    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            found.append(f"system.{index}: must be a text block")
        elif is_blank(block.get("text")):
            found.append(f"system.{index}.text: text content blocks must contain non-whitespace text")
    return found


def _tools_problems(body: dict[str, Any]) -> list[str]:
    tools = body.get("tools")
    found = []
    if "tool_choice" in body:
        choice = body["tool_choice"]
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            found.append("tool_choice: type must be auto, any, tool or none")
        elif not tools and choice.get("type") != "none":
            found.append("tool_choice: may only be specified while providing tools")
    if tools is None:
        return found
    if not isinstance(tools, list):
        return [*found, "tools: must be a list"]
    names: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"tools.{index}"
        if not isinstance(tool, dict):
            found.append(f"{where}: must be an object")
            continue
        if problem := tool_name_problem(f"{where}.name", tool.get("name")):
            found.append(problem)
        elif tool["name"] in names:
            found.append(f"{where}.name: tool names must be unique ({tool['name']!r})")
        names.add(str(tool.get("name")))
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            found.append(f"{where}.input_schema: required, a JSON schema of type object")
    return found


def _messages_problems(messages: list[Any]) -> list[str]:
    found: list[str] = []
    # Tool calls of the previous assistant turn, each of which the next user turn must answer.
    open_calls: list[str] = []
    seen_ids: set[str] = set()
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            found.append(f"{where}: must be an object with role and content")
            continue
        role = message.get("role")
        last = index == len(messages) - 1
        if role == "system":
            found.append(f"{where}.role: unexpected role 'system'; the system prompt is the top-level system parameter")
            continue
        if role not in ("user", "assistant"):
            found.append(f"{where}.role: must be 'user' or 'assistant', not {role!r}")
            continue
        if index == 0 and role != "user":
            found.append(f"{where}: the first message must use the user role")
        previous = messages[index - 1] if index else None
        if isinstance(previous, dict) and previous.get("role") == role:
            found.append(f"{where}: roles must alternate between user and assistant; two {role} messages in a row")
        blocks = _blocks(where, message.get("content"), found, final_assistant=last and role == "assistant")
        found += _answer_problems(where, role, blocks, open_calls)
        open_calls = []
        for number, block in enumerate(blocks):
            found += _block_problems(f"{where}.content.{number}", role, block, seen_ids)
            if role == "assistant" and block.get("type") == "tool_use" and isinstance(block.get("id"), str):
                open_calls.append(block["id"])
        if last and role == "assistant" and blocks and blocks[-1].get("type") == "text":
            text = blocks[-1].get("text")
            if isinstance(text, str) and text != text.rstrip():
                found.append(f"{where}: final assistant content cannot end with trailing whitespace")
    if open_calls:
        found.append(f"messages: tool_use ids were found without tool_result blocks: {', '.join(open_calls)}")
    return found


def _blocks(where: str, content: Any, found: list[str], *, final_assistant: bool) -> list[dict[str, Any]]:
    """The message's content as blocks; problems with its shape go to `found`."""
    if isinstance(content, str):
        if is_blank(content) and not (final_assistant and content == ""):
            found.append(f"{where}.content: all messages must have non-empty, non-whitespace content "
                         "except for the optional final assistant message")
        return [{"type": "text", "text": content}] if content.strip() else []
    if not isinstance(content, list) or (not content and not final_assistant):
        found.append(f"{where}.content: must be a non-empty string or a non-empty list of content blocks")
        return []
    blocks = [block for block in content if isinstance(block, dict)]
    if len(blocks) != len(content):
        found.append(f"{where}.content: every content block must be an object")
    return blocks


def _answer_problems(where: str, role: str, blocks: list[dict[str, Any]], open_calls: list[str]) -> list[str]:
    """The tool_use blocks of the turn before must each get exactly one tool_result, first in this turn."""
    results = [block.get("tool_use_id") for block in blocks if block.get("type") == "tool_result"]
    found = []
    if open_calls and role != "user":
        return [f"{where}: tool_use ids were found without tool_result blocks immediately after: "
                f"{', '.join(open_calls)}"]
    leading = 0
    while leading < len(blocks) and blocks[leading].get("type") == "tool_result":
        leading += 1
    if leading != len(results):
        found.append(f"{where}.content: tool_result blocks must come first in the content, before any other block")
    for call_id in results:
        if call_id not in open_calls:
            found.append(f"{where}.content: unexpected tool_use_id {call_id!r} in tool_result blocks: each "
                         "tool_result must have a corresponding tool_use block in the previous message")
        elif results.count(call_id) > 1:
            found.append(f"{where}.content: more than one tool_result for tool_use id {call_id!r}")
    missing = [call_id for call_id in open_calls if call_id not in results]
    if missing:
        found.append(f"{where}: tool_use ids were found without tool_result blocks immediately after: "
                     f"{', '.join(missing)}")
    return found


def _block_problems(where: str, role: str, block: dict[str, Any], seen_ids: set[str]) -> list[str]:
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        return [f"{where}.type: unknown content block type {kind!r}"]
    if kind == "text" and is_blank(block.get("text")):
        return [f"{where}.text: text content blocks must contain non-whitespace text"]
    if kind in ("tool_use", "thinking", "redacted_thinking") and role != "assistant":
        return [f"{where}: {kind} blocks may only appear in assistant messages"]
    if kind == "tool_result" and role != "user":
        return [f"{where}: tool_result blocks may only appear in user messages"]
    if kind == "tool_use":
        found = [p for p in (tool_id_problem(f"{where}.id", block.get("id"), seen_ids),
                             tool_name_problem(f"{where}.name", block.get("name"))) if p]
        if not isinstance(block.get("input"), dict):
            found.append(f"{where}.input: must be an object")
        return found
    if kind == "tool_result":
        return _tool_result_problems(where, block)
    return []


def _tool_result_problems(where: str, block: dict[str, Any]) -> list[str]:
    content = block.get("content")
    if content is None or isinstance(content, str):
        return []
    if not isinstance(content, list):
        return [f"{where}.content: must be a string or a list of content blocks"]
    return [f"{where}.content.{n}.text: text content blocks must contain non-whitespace text"
            for n, inner in enumerate(content)
            if isinstance(inner, dict) and inner.get("type") == "text" and is_blank(inner.get("text"))]


def _cache_breakpoints(body: dict[str, Any]) -> int:
    """How many blocks (system, tools, message content) carry cache_control."""
    places: list[Any] = []
    for key in ("system", "tools"):
        if isinstance(body.get(key), list):
            places += body[key]
    for message in body.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            places += message["content"]
    return sum(1 for place in places if isinstance(place, dict) and place.get("cache_control") is not None)
