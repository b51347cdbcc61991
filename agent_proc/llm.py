"""Calling a model over HTTP with `requests`: one call, streamed, retried when it is safe.

The wire format of each API lives in its own module (`wire_openai`, `wire_openai_responses`,
`wire_anthropic`, chosen by the provider and `--api`); this one holds what they share: the result types, the SSE
reader, error mapping and the retry loop.

A call in progress fills a `Partial` as bytes arrive. If SIGINT lands mid-call, the
`KeyboardInterrupt` unwinds through `requests`, the `with` blocks close the response
and its socket, and the caller still holds the `Partial` with everything received.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from agent_proc.logs import redact_text
from agent_proc.providers import ModelRef
from agent_proc.reasoning import RequestReasoning

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 300.0  # no byte for this long ends the call
MAX_ATTEMPTS = 5
MAX_BACKOFF = 30.0
MESSAGE_LIMIT = 300  # characters of an error message shown to people

# Tool call ids as both APIs accept them back.
TOOL_CALL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")

# Error types (Anthropic's `type`, OpenAI's `type` or `code`) that describe the service's
# state rather than the request, so trying again may help; and the HTTP status each stands for.
RETRYABLE_ERROR_TYPES = {
    "rate_limit_error": 429, "rate_limit_exceeded": 429, "overloaded_error": 529, "api_error": 500,
    "server_error": 500, "service_unavailable": 503, "timeout": 504,
}


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` as people see an error: one line, whitespace runs collapsed, at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def join_text(before: str, piece: str) -> str:
    """`before + piece`, with a surrogate pair that a stream split across two events put back together."""
    if before and piece and "\ud800" <= before[-1] <= "\udbff" and "\udc00" <= piece[0] <= "\udfff":
        pair = (before[-1] + piece[0]).encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        return before[:-1] + pair + piece[1:]
    return before + piece


def whole_text(text: str) -> str:
    """`text` fit to store: surrogate pairs joined, any lone surrogate left replaced by U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text as the model wrote it; may be invalid


@dataclass
class Partial:
    """Everything a call has produced so far; whole once the call returns."""

    content: str = ""
    reasoning: str = ""  # the reasoning as streamed (summary or thinking text), complete or not
    # The provider's reasoning items (signed thinking blocks, encrypted reasoning), each only once it is
    # whole: they go back to the model on later turns exactly as they came.
    reasoning_items: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    first_byte_ms: float | None = None
    wire_state: dict[str, Any] = field(default_factory=dict)  # scratch space of the wire module while streaming

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)

    def tool_call(self, index: int) -> ToolCall:
        while len(self.tool_calls) <= index:
            self.tool_calls.append(ToolCall(id="", name="", arguments=""))
        return self.tool_calls[index]

    def add_text(self, kind: str, piece: str) -> str:
        """Append a streamed piece to `content` ("text") or `reasoning`; return the part that
        can be shown now (half of a surrogate pair waits for its other half)."""
        name = "content" if kind == "text" else "reasoning"
        before = getattr(self, name)
        waiting = before[-1] if before and "\ud800" <= before[-1] <= "\udbff" else ""
        setattr(self, name, join_text(before, piece))
        shown = join_text(waiting, piece)
        return shown[:-1] if shown and "\ud800" <= shown[-1] <= "\udbff" else shown


class LLMError(Exception):
    """A model call that failed; `retryable` says whether trying again may help.

    `kind` is "http" (an error status), "redirect" (a 3xx, never followed), "timeout"
    (too slow: --idle-timeout or the supervisor's --llm-timeout), "connection", "stream"
    (broken, malformed, or an error reported inside it), "response" (not an answer) or
    "empty" (an answer with no text and no tool call). The message is always one line.
    """

    def __init__(self, message: str, *, retryable: bool, kind: str = "http", status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(one_line(message))
        self.retryable = retryable
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


class CallTimeout(BaseException):
    """Raised in the main thread when the supervisor's watchdog says the call in flight
    has run past --llm-timeout (it sends SIGUSR1). Like KeyboardInterrupt, it abandons
    the blocking read and closes the connection."""


@dataclass
class CallConfig:
    ref: ModelRef
    base_url: str
    api_key: str | None
    stream: bool = True
    idle_timeout: float | None = None  # seconds without a byte before the call is given up
    retry_timeouts: bool = True  # whether a timed-out attempt is tried again
    max_output_tokens: int | None = None  # the longest reply asked for; None: the wire's default
    api: str | None = None  # OpenAI format: "chat" or "responses"; None for a provider with its own format
    reasoning: RequestReasoning = field(default_factory=RequestReasoning)


# Called with ("text" | "reasoning", fragment) as a stream delivers it.
OnDelta = Callable[[str, str], None]
# Called after a failed attempt with (attempt, error, what it produced, seconds until the
# next attempt or None when there is none).
OnFailure = Callable[[int, LLMError, "Partial", "float | None"], None]


def _retry_after(response: requests.Response) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms` (the more precise), else `Retry-After`."""
    for name, scale in (("retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = response.headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue  # an HTTP date: rare from these APIs; fall back to backoff
    return None


def _retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def _error_from_response(response: requests.Response) -> LLMError:
    status = response.status_code
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    detail = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    detail = detail or (response.text[:200].strip() if response.text else response.reason)
    return LLMError(
        f"HTTP {status} from {response.url}: {detail}", retryable=_retryable_status(status), status=status,
        retry_after=_retry_after(response),
    )


def _redirect_error(response: requests.Response) -> LLMError:
    """A 3xx is never followed: the key and the conversation must not go to another host."""
    target = urlsplit(response.headers.get("Location") or "")
    where = target.hostname or urlsplit(response.url).hostname or "an unknown host"
    return LLMError(f"HTTP {response.status_code} from {response.url}: the model API redirects to {where}; "
                    "redirects are not followed (check --base-url)", retryable=False, kind="redirect",
                    status=response.status_code)


def stream_error(error: Any) -> LLMError:
    """An error reported inside a stream (OpenAI's `{"error": ...}` event, Anthropic's `error`
    event), classified as its HTTP twin would be: rate limits, overload and server errors are retried."""
    if isinstance(error, dict):
        kind = str(error.get("type") or error.get("code") or "")
        message = str(error.get("message") or kind or "no message")
        code = error.get("code")
    else:
        kind, message, code = "", str(error), None
    status = code if isinstance(code, int) else RETRYABLE_ERROR_TYPES.get(kind) or \
        RETRYABLE_ERROR_TYPES.get(str(code or ""))
    retryable = status is not None and _retryable_status(status)
    named = f" ({kind})" if kind and kind not in message else ""
    return LLMError(f"the model's stream reported an error: {message}{named}", retryable=retryable, kind="stream",
                    status=status)


def _media_type(response: requests.Response) -> str:
    return (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _arrivals(response: requests.Response) -> Iterator[bytes]:
    """Bytes of a streamed body as soon as they arrive.

    `iter_lines` would wait to fill a buffer on bodies that are not chunked, which
    turns a slow stream into silence; read what the socket has instead.
    """
    raw = response.raw
    if raw.chunked and raw.supports_chunked_reads():
        yield from raw.read_chunked(None, decode_content=True)
        return
    read1 = getattr(raw, "read1", None)
    while chunk := (read1(65536) if read1 else raw.read(1)):
        yield chunk


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r")
    if pending:
        yield pending


def sse_data(lines: Iterator[bytes]) -> Iterator[str]:
    """The `data:` payloads of a server-sent-event stream, one per event."""
    buffer: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", errors="replace")
        if line == "":
            if buffer:
                yield "\n".join(buffer)
                buffer = []
        elif line.startswith("data:"):
            buffer.append(line[5:].lstrip(" "))
    if buffer:
        yield "\n".join(buffer)


def wire_for(config: CallConfig) -> ModuleType:
    """The module that speaks the run's wire format: `agent_proc.wire_<name>`, from the provider's
    format and, for the OpenAI format, `--api` (`wire_openai_responses` for the Responses API).

    Each such module has `build_request`, `read_response` and `read_stream_event`
    (which returns True when the event ends the stream).
    """
    name = config.ref.provider.wire
    if name == "openai" and config.api == "responses":
        name = "openai_responses"
    return importlib.import_module(f"agent_proc.wire_{name}")


def call_once(
    session: requests.Session, config: CallConfig, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
    partial: Partial, on_delta: OnDelta,
) -> Partial:
    """One HTTP request to the model. Fills and returns `partial`; raises `LLMError`.

    Every tool call comes back with an id both APIs accept, unique among the calls in
    `messages`; an error message never holds the API key, even escaped.
    """
    try:
        _request(session, config, messages, tools, partial, on_delta)
    except LLMError as error:
        error.args = (redact_text(str(error), [config.api_key]),)
        raise
    partial.content, partial.reasoning = whole_text(partial.content), whole_text(partial.reasoning)
    for call in partial.tool_calls:
        call.arguments = whole_text(call.arguments)
    fix_tool_call_ids(partial.tool_calls, taken_tool_call_ids(messages))
    return partial


def _request(
    session: requests.Session, config: CallConfig, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
    partial: Partial, on_delta: OnDelta,
) -> None:
    wire = wire_for(config)
    url, headers, body = wire.build_request(config.ref.model, config.base_url, config.api_key,
                                            messages, tools, config.stream,
                                            max_output_tokens=config.max_output_tokens, reasoning=config.reasoning)
    try:
        # Never follow a redirect: requests would re-send the key (and on 307 the conversation) to its target.
        with session.post(url, headers=headers, json=body, stream=config.stream, allow_redirects=False,
                          timeout=(CONNECT_TIMEOUT, config.idle_timeout or READ_TIMEOUT)) as response:
            if 300 <= response.status_code < 400:
                raise _redirect_error(response)
            if response.status_code >= 400:
                raise _error_from_response(response)
            media_type = _media_type(response)
            # A server may answer a streamed request with a whole JSON answer; read it as one.
            if not config.stream or _is_json(media_type):
                partial.first_byte_ms = partial.elapsed_ms()
                _read_whole(wire, response, partial)
            elif media_type not in ("text/event-stream", ""):
                start = response.raw.read(200).decode("utf-8", errors="replace")
                raise LLMError(f"the model API answered a streamed request with {media_type}, not a stream: {start}",
                               retryable=False, kind="response")
            else:
                _read_stream(wire, response, partial, on_delta)
            _check_answer(partial, response)
    except CallTimeout:
        raise LLMError("the model call ran past --llm-timeout and was abandoned", retryable=config.retry_timeouts,
                       kind="timeout") from None
    except (requests.Timeout, urllib3.exceptions.TimeoutError):
        idle = config.idle_timeout or READ_TIMEOUT
        raise LLMError(f"no data from the model API for {idle:g} s", retryable=config.retry_timeouts,
                       kind="timeout") from None
    except requests.exceptions.ChunkedEncodingError as e:
        raise LLMError(f"the model's stream broke off: {e}", retryable=True, kind="stream") from None
    except requests.ConnectionError as e:
        raise LLMError(f"connection to the model API failed: {e}", retryable=True, kind="connection") from None
    except urllib3.exceptions.HTTPError as e:  # raised from inside the stream, which bypasses requests
        raise LLMError(f"the model's stream broke off: {e}", retryable=True, kind="stream") from None
    except (requests.exceptions.InvalidHeader, UnicodeEncodeError):
        # Their text quotes the header value, which may be the key: never show it.
        raise LLMError("a request header (the API key?) holds characters that cannot be sent over HTTP",
                       retryable=False, kind="connection") from None
    except requests.RequestException as e:
        raise LLMError(f"request to the model API failed: {e}", retryable=False, kind="connection") from None


def _read_whole(wire: ModuleType, response: requests.Response, partial: Partial) -> None:
    try:
        doc = json.loads(response.content)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        raise LLMError("the model API answered with invalid JSON", retryable=False, kind="response") from None
    wire.read_response(doc, partial)


def _read_stream(wire: ModuleType, response: requests.Response, partial: Partial, on_delta: OnDelta) -> None:
    done = False
    stray: list[bytes] = []  # the first line that is no part of a server-sent-event stream, if any
    for data in sse_data(_noting_stray_line(_lines(_arrivals(response)), stray)):
        if partial.first_byte_ms is None:
            partial.first_byte_ms = partial.elapsed_ms()
        if data.strip() == "[DONE]":
            done = True
            break
        try:
            event = json.loads(data)
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
            raise LLMError(f"malformed event in the model's stream: {data[:120]!r}", retryable=False,
                           kind="stream") from None
        if wire.read_stream_event(event, partial, on_delta):
            done = True
            break
    if done or partial.finish_reason is not None:
        return
    if stray and partial.first_byte_ms is None:
        # No event at all, but something else: a body that only claims to be a stream.
        raise _not_a_stream(stray[0].decode("utf-8", errors="replace"))
    raise LLMError("the model's stream ended before it was complete", retryable=True, kind="stream")


def _noting_stray_line(lines: Iterator[bytes], stray: list[bytes]) -> Iterator[bytes]:
    for line in lines:
        if line and not stray and not line.startswith((b"data:", b"event:", b"id:", b"retry:", b":")):
            stray.append(line)
        yield line


def _not_a_stream(text: str) -> LLMError:
    """The error for a body sent as a stream that holds no event: its own error if it is
    a JSON error document (classified like an HTTP error), else the start of the text."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict) and doc.get("error"):
        return stream_error(doc["error"])
    return LLMError(f"the model API answered a streamed request with something that is not a stream: {text[:200]}",
                    retryable=False, kind="response")


def _check_answer(partial: Partial, response: requests.Response) -> None:
    """An answer with no text and no tool call (not cut off by the output limit) is a failed attempt."""
    if partial.finish_reason != "length" and not partial.content.strip() and not partial.tool_calls:
        raise LLMError("the model's answer was empty: no text and no tool call", retryable=True, kind="empty",
                       retry_after=_retry_after(response))


def taken_tool_call_ids(messages: list[dict[str, Any]]) -> set[str]:
    """The ids of every tool call already in the conversation."""
    return {call.get("id") or "" for message in messages if message.get("role") == "assistant"
            for call in message.get("tool_calls") or []}


def fix_tool_call_ids(calls: list[ToolCall], taken: set[str]) -> None:
    """Give every call an id both APIs accept and no other call in the conversation has.

    A call that came without one (some streams leave it out), with characters an API
    refuses, or with an id already used (servers that number calls per reply) gets a new
    random one; two calls can then never share a result.
    """
    for call in calls:
        if not TOOL_CALL_ID.match(call.id) or call.id in taken:
            call.id = f"call_{os.urandom(12).hex()}"
        taken.add(call.id)


def backoff_seconds(attempt: int, error: LLMError) -> float:
    """How long to wait before attempt `attempt + 1`: the server's Retry-After, else
    exponential backoff with jitter."""
    if error.retry_after is not None:
        return min(error.retry_after, 120.0)
    return min(MAX_BACKOFF, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


def complete(
    session: requests.Session, config: CallConfig, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
    *, on_delta: OnDelta, on_failure: OnFailure, new_partial: Callable[[int], Partial],
) -> Partial:
    """Call the model, retrying rate limits, server errors, dropped connections and
    (if `config.retry_timeouts`) timeouts, at most MAX_ATTEMPTS times in all.

    `new_partial(attempt)` is asked for a fresh `Partial` before each attempt, so the
    caller always knows which one is in flight; `on_failure` hears of every failed one.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        partial = new_partial(attempt)
        try:
            return call_once(session, config, messages, tools, partial, on_delta)
        except LLMError as error:
            last = not error.retryable or attempt == MAX_ATTEMPTS
            wait = None if last else backoff_seconds(attempt, error)
            on_failure(attempt, error, partial, wait)
            if wait is None:
                raise
            time.sleep(wait)  # SIGINT ends this sleep at once with KeyboardInterrupt
    raise AssertionError("unreachable")
