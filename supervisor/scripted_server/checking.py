"""What the strict request checkers of every wire share: the rules both APIs state alike."""

from __future__ import annotations

import re
from typing import Any

# Tool (function) names, both APIs: letters, digits, underscores and dashes, 1 to 64 of them.
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Tool call ids as both APIs accept them when they come back in a request.
TOOL_CALL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def is_blank(text: Any) -> bool:
    """Whether a text is missing, empty or only whitespace (what a strict API refuses)."""
    return not isinstance(text, str) or not text.strip()


def unknown_keys(where: str, doc: dict[str, Any], known: frozenset[str]) -> list[str]:
    return [f"{where}{key}: unknown parameter (extra inputs are not permitted)" for key in sorted(set(doc) - known)]


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def tool_name_problem(where: str, name: Any) -> str | None:
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        return f"{where}: tool name {name!r} must match {TOOL_NAME.pattern}"
    return None


def tool_id_problem(where: str, call_id: Any, seen: set[str]) -> str | None:
    """A problem with a tool call id, if any; `seen` collects the ids of the request."""
    if not isinstance(call_id, str) or not TOOL_CALL_ID.match(call_id):
        return f"{where}: tool call id {call_id!r} must match {TOOL_CALL_ID.pattern}"
    if call_id in seen:
        return f"{where}: tool call id {call_id!r} is used more than once"
    seen.add(call_id)
    return None
