"""One scripted step resolved against one request, and the shape every wire module has.

A wire module (openai_chat, anthropic_messages, ...) renders a Turn as a whole
answer body or as the server-sent events of a stream, and describes itself with
a Wire: the routes it answers, its error shape, and its strict request checker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple


class Chunk(NamedTuple):
    """One server-sent event; paced events are preceded by the step's chunk_delay."""

    data: bytes
    paced: bool


@dataclass
class ToolCall:
    id: str  # "" when the step says to leave ids out
    name: str
    arguments: dict[str, Any]
    raw_arguments: str | None = None  # sent as the arguments text instead, valid JSON or not

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments) if self.raw_arguments is None else self.raw_arguments

    @property
    def arguments_object(self) -> dict[str, Any]:
        """The arguments where a wire needs an object: raw ones only if they parse as one."""
        if self.raw_arguments is None:
            return self.arguments
        try:
            parsed = json.loads(self.raw_arguments)
        except (ValueError, RecursionError):
            return {}
        return parsed if isinstance(parsed, dict) else {}


@dataclass
class Turn:
    """One scripted step resolved against one request, ready to render on any wire."""

    n: int
    model: str
    created: int
    content: str
    reasoning: str
    tool_calls: list[ToolCall]
    usage: dict[str, int]
    chunk_chars: int
    include_usage: bool
    truncated: bool = False  # cut off by the output limit
    split_surrogates: bool = False  # stream text in UTF-16 code units, splitting surrogate pairs
    redacted_thinking: bool = False  # Anthropic: a redacted_thinking block before the thinking
    ascii_only: bool = True  # JSON with \u escapes; False sends raw UTF-8

    def pieces(self, text: str) -> list[str]:
        """Text cut into the stream's deltas of chunk_chars characters (or UTF-16 code units)."""
        if not self.split_surrogates:
            return pieces(text, self.chunk_chars)
        units = text.encode("utf-16-le", "surrogatepass")
        size = 2 * self.chunk_chars
        return [units[at : at + size].decode("utf-16-le", "surrogatepass") for at in range(0, len(units), size)]

    def sse_data(self, payload: Any) -> bytes:
        return b"data: " + json.dumps(payload, ensure_ascii=self.ascii_only).encode() + b"\n\n"

    def sse_event(self, name: str, payload: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(payload, ensure_ascii=self.ascii_only)}\n\n".encode()


@dataclass(frozen=True)
class Wire:
    """Everything the HTTP layer needs to know about one API's wire format."""

    name: str
    # POST paths answered in this format.
    routes: tuple[str, ...]
    tool_id_prefix: str
    # Request body keys whose text counts towards the prompt's token estimate.
    prompt_keys: tuple[str, ...]
    render_body: Callable[[Turn], dict[str, Any]]
    render_stream: Callable[[Turn], list[Chunk]]
    malformed_stream: Callable[[], list[Chunk]]
    malformed_body: bytes
    error_body: Callable[[int, str], dict[str, Any]]
    # The event that reports an error of this type and message inside a stream.
    stream_error: Callable[[str, str], Chunk]
    # True when the request headers carry this API key the way this API expects it.
    has_api_key: Callable[[Mapping[str, str], str], bool]
    # The strict request checker: the problems a real API would reject the body for.
    check_request: Callable[[dict[str, Any]], list[str]]


# The error type names both APIs use for these statuses.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def pieces(text: str, size: int) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


def text_chars(value: Any) -> int:
    """Count the characters of every string inside a JSON value (keys excluded)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(text_chars(item) for item in value.values())
    if isinstance(value, list):
        return sum(text_chars(item) for item in value)
    return 0

