"""A scripted HTTP server that speaks the OpenAI and Anthropic LLM wire formats.

The test suite and the keyless demo point real clients at it. Each POST to a
completion endpoint consumes the next step of a JSON script; a step says what
the "model" answers and how the transport misbehaves (delays, hangs, dropped
connections, malformed bodies, error statuses). Everything that happens on the
wire is recorded as events so that tests can assert on it.

Script format::

    {"steps": [step, ...], "when_exhausted": "error" | "repeat_last"}

Step keys, all optional: content, reasoning, tool_calls, chunk_chars,
chunk_delay, delay, status, error, headers, hang, hang_after_chunks, drop,
drop_after_chunks, malformed, usage, expect_api_key. The "chunks" counted by
the *_after_chunks keys are server-sent events, including the opening ones
(role chunk, message_start, ping) and the closing ones.

Recorded events::

    {"event": "request", "n", "path", "headers", "body", "t"}
    {"event": "response_done", "n", "status", "t"}
    {"event": "client_disconnected", "n", "t"}
    {"event": "dropped", "n", "t"}

Command line::

    python -m supervisor.scripted_server --script FILE [--port N]
        [--host 127.0.0.1] [--log FILE] [--ready-file FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import select
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_MODEL",
    "ScriptError",
    "ScriptedServer",
    "load_script",
    "main",
    "start_server",
    "validate_script",
]

DEFAULT_MODEL = "scripted-model"

# How often a waiting handler looks at the stop flag; bounds how long stop() can take.
_POLL_SECONDS = 0.05

_OPENAI = "openai"
_ANTHROPIC = "anthropic"
_COMPLETION_ROUTES = {
    "/v1/chat/completions": _OPENAI,
    "/chat/completions": _OPENAI,
    "/v1/messages": _ANTHROPIC,
    "/messages": _ANTHROPIC,
}

# Recorded events may end up in files and test output; secrets must not.
_REDACTED_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization"})

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


# --------------------------------------------------------------------------- script


class ScriptError(ValueError):
    """The script document is malformed; the message says where."""


_STEP_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "content": (str,),
    "reasoning": (str,),
    "tool_calls": (list,),
    "chunk_chars": (int,),
    "chunk_delay": (int, float),
    "delay": (int, float),
    "status": (int,),
    "error": (str,),
    "headers": (dict,),
    "hang": (bool,),
    "hang_after_chunks": (int,),
    "drop": (bool,),
    "drop_after_chunks": (int,),
    "malformed": (bool,),
    "usage": (dict,),
    "expect_api_key": (str,),
}
_NON_NEGATIVE_FIELDS = ("chunk_delay", "delay", "hang_after_chunks", "drop_after_chunks")
_USAGE_KEYS = frozenset({"prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"})
_TOOL_CALL_KEYS = frozenset({"name", "arguments", "id"})


def load_script(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a script file; raise ScriptError with a one-line reason."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise ScriptError(f"cannot read script {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ScriptError(f"script {path} is not valid JSON: {exc}") from exc
    try:
        return validate_script(document)
    except ScriptError as exc:
        raise ScriptError(f"script {path}: {exc}") from exc


def validate_script(script: Any) -> dict[str, Any]:
    """Check a script document and return a copy with defaults filled in.

    Raises ScriptError naming the first problem found. Unknown keys are errors,
    because a misspelt key would otherwise silently script the wrong behaviour.
    """
    if not isinstance(script, dict):
        raise ScriptError("the script must be a JSON object with a 'steps' list")
    unknown = sorted(set(script) - {"steps", "when_exhausted"})
    if unknown:
        raise ScriptError(f"unknown top-level key(s): {', '.join(unknown)}")
    steps = script.get("steps")
    if not isinstance(steps, list):
        raise ScriptError("'steps' must be a list")
    when_exhausted = script.get("when_exhausted", "error")
    if when_exhausted not in ("error", "repeat_last"):
        raise ScriptError("'when_exhausted' must be 'error' or 'repeat_last'")
    for index, step in enumerate(steps):
        _check_step(f"step {index}", step)
    return {"steps": copy.deepcopy(steps), "when_exhausted": when_exhausted}


def _check_step(where: str, step: Any) -> None:
    if not isinstance(step, dict):
        raise ScriptError(f"{where}: must be an object")
    for key, value in step.items():
        expected = _STEP_FIELD_TYPES.get(key)
        if expected is None:
            raise ScriptError(f"{where}: unknown key {key!r}")
        # bool is a subclass of int, yet `"delay": true` is surely a mistake.
        wrong_bool = isinstance(value, bool) and bool not in expected
        if wrong_bool or not isinstance(value, expected):
            names = " or ".join(kind.__name__ for kind in expected)
            raise ScriptError(f"{where}: {key!r} must be of type {names}")
    for key in _NON_NEGATIVE_FIELDS:
        if step.get(key, 0) < 0:
            raise ScriptError(f"{where}: {key!r} must not be negative")
    if step.get("chunk_chars", 1) < 1:
        raise ScriptError(f"{where}: 'chunk_chars' must be at least 1")
    if not 100 <= step.get("status", 200) <= 599:
        raise ScriptError(f"{where}: 'status' must be an HTTP status code")
    for name, value in step.get("headers", {}).items():
        if not isinstance(value, str):
            raise ScriptError(f"{where}: header {name!r} must have a string value")
    for name, value in step.get("usage", {}).items():
        if name not in _USAGE_KEYS:
            raise ScriptError(f"{where}: unknown usage key {name!r}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ScriptError(f"{where}: usage {name!r} must be a non-negative integer")
    for number, call in enumerate(step.get("tool_calls", [])):
        _check_tool_call(f"{where}: tool call {number}", call)


def _check_tool_call(where: str, call: Any) -> None:
    if not isinstance(call, dict):
        raise ScriptError(f"{where}: must be an object")
    unknown = sorted(set(call) - _TOOL_CALL_KEYS)
    if unknown:
        raise ScriptError(f"{where}: unknown key(s): {', '.join(unknown)}")
    if not isinstance(call.get("name"), str) or not call["name"]:
        raise ScriptError(f"{where}: 'name' must be a non-empty string")
    if not isinstance(call.get("arguments", {}), dict):
        raise ScriptError(f"{where}: 'arguments' must be an object")
    if not isinstance(call.get("id", ""), str):
        raise ScriptError(f"{where}: 'id' must be a string")


# --------------------------------------------------------------------------- recording


class _Recorder:
    """Thread-safe event list, mirrored to a JSON-lines file when asked."""

    def __init__(self, log_path: str | None) -> None:
        self._events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._log_path = log_path
        if log_path:
            # Fail at start, not on the first request, when the file cannot be written.
            with open(log_path, "a", encoding="utf-8"):
                pass

    def record(self, event: str, **fields: Any) -> None:
        entry = {"event": event, **fields, "t": time.time()}
        with self._changed:
            self._events.append(entry)
            if self._log_path:
                # Reopened per line so that readers tailing the file see every line at once.
                with open(self._log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(entry) + "\n")
            self._changed.notify_all()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._changed:
            return copy.deepcopy(self._events)

    def wait_for(self, event: str, n: int | None, timeout: float) -> dict[str, Any] | None:
        def find() -> dict[str, Any] | None:
            for entry in self._events:
                if entry["event"] == event and (n is None or entry.get("n") == n):
                    return entry
            return None

        with self._changed:
            found = self._changed.wait_for(find, timeout)
            return copy.deepcopy(found)


# --------------------------------------------------------------------------- rendering


class _Chunk(NamedTuple):
    """One server-sent event; paced events are preceded by the step's chunk_delay."""

    data: bytes
    paced: bool


@dataclass
class _ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments)


@dataclass
class _Turn:
    """One scripted step resolved against one request, ready to render in either format."""

    n: int
    model: str
    created: int
    content: str
    reasoning: str
    tool_calls: list[_ToolCall]
    usage: dict[str, int]
    chunk_chars: int
    include_usage: bool

    @property
    def openai_finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def anthropic_stop_reason(self) -> str:
        return "tool_use" if self.tool_calls else "end_turn"


def _pieces(text: str, size: int) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


def _text_chars(value: Any) -> int:
    """Count the characters of every string inside a JSON value (keys excluded)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_chars(item) for item in value.values())
    if isinstance(value, list):
        return sum(_text_chars(item) for item in value)
    return 0


def _sse_data(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _sse_event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


def _openai_usage(usage: dict[str, int]) -> dict[str, Any]:
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    rendered: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if "cached_tokens" in usage:
        rendered["prompt_tokens_details"] = {"cached_tokens": usage["cached_tokens"]}
    if "reasoning_tokens" in usage:
        rendered["completion_tokens_details"] = {"reasoning_tokens": usage["reasoning_tokens"]}
    return rendered


def _anthropic_usage(usage: dict[str, int], output_tokens: int | None = None) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "input_tokens": usage["prompt_tokens"],
        "output_tokens": usage["completion_tokens"] if output_tokens is None else output_tokens,
    }
    if "cached_tokens" in usage:
        rendered["cache_read_input_tokens"] = usage["cached_tokens"]
    return rendered


def _openai_completion(turn: _Turn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.content or None}
    if turn.reasoning:
        message["reasoning_content"] = turn.reasoning
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call in turn.tool_calls
        ]
    return {
        "id": f"chatcmpl-scripted-{turn.n}",
        "object": "chat.completion",
        "created": turn.created,
        "model": turn.model,
        "choices": [{"index": 0, "message": message, "finish_reason": turn.openai_finish_reason}],
        "usage": _openai_usage(turn.usage),
    }


def _openai_stream(turn: _Turn) -> list[_Chunk]:
    def frame(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": f"chatcmpl-scripted-{turn.n}",
            "object": "chat.completion.chunk",
            "created": turn.created,
            "model": turn.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        if turn.include_usage:
            # OpenAI marks every chunk but the last with "usage": null when usage is requested.
            chunk["usage"] = None
        return _sse_data(chunk)

    size = turn.chunk_chars
    chunks = [_Chunk(frame({"role": "assistant", "content": "" if turn.content else None}), False)]
    chunks += [_Chunk(frame({"reasoning_content": p}), True) for p in _pieces(turn.reasoning, size)]
    chunks += [_Chunk(frame({"content": p}), True) for p in _pieces(turn.content, size)]
    for index, call in enumerate(turn.tool_calls):
        opening = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        chunks.append(_Chunk(frame({"tool_calls": [opening]}), False))
        chunks += [
            _Chunk(frame({"tool_calls": [{"index": index, "function": {"arguments": p}}]}), True)
            for p in _pieces(call.arguments_json, size)
        ]
    chunks.append(_Chunk(frame({}, turn.openai_finish_reason), False))
    if turn.include_usage:
        usage_chunk = {
            "id": f"chatcmpl-scripted-{turn.n}",
            "object": "chat.completion.chunk",
            "created": turn.created,
            "model": turn.model,
            "choices": [],
            "usage": _openai_usage(turn.usage),
        }
        chunks.append(_Chunk(_sse_data(usage_chunk), False))
    chunks.append(_Chunk(b"data: [DONE]\n\n", False))
    return chunks


def _anthropic_blocks(turn: _Turn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.reasoning:
        blocks.append({"type": "thinking", "thinking": turn.reasoning, "signature": ""})
    if turn.content:
        blocks.append({"type": "text", "text": turn.content})
    for call in turn.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return blocks


def _anthropic_message(turn: _Turn) -> dict[str, Any]:
    return {
        "id": f"msg_scripted_{turn.n}",
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": _anthropic_blocks(turn),
        "stop_reason": turn.anthropic_stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(turn.usage),
    }


def _anthropic_block_stream(block: dict[str, Any], size: int) -> tuple[dict[str, Any], list[dict]]:
    """Split a finished content block into its empty opening form and its deltas."""
    if block["type"] == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"], size)]
        return {**block, "thinking": ""}, deltas
    if block["type"] == "text":
        return {**block, "text": ""}, [{"type": "text_delta", "text": p} for p in _pieces(block["text"], size)]
    arguments = json.dumps(block["input"])
    return {**block, "input": {}}, [{"type": "input_json_delta", "partial_json": p} for p in _pieces(arguments, size)]


def _anthropic_stream(turn: _Turn) -> list[_Chunk]:
    def event(name: str, **fields: Any) -> bytes:
        return _sse_event(name, {"type": name, **fields})

    opening = {
        **_anthropic_message(turn),
        "content": [],
        "stop_reason": None,
        "usage": _anthropic_usage(turn.usage, output_tokens=0),
    }
    chunks = [_Chunk(event("message_start", message=opening), False), _Chunk(event("ping"), False)]
    for index, block in enumerate(_anthropic_blocks(turn)):
        start, deltas = _anthropic_block_stream(block, turn.chunk_chars)
        chunks.append(_Chunk(event("content_block_start", index=index, content_block=start), False))
        chunks += [_Chunk(event("content_block_delta", index=index, delta=d), True) for d in deltas]
        chunks.append(_Chunk(event("content_block_stop", index=index), False))
    closing_delta = {"stop_reason": turn.anthropic_stop_reason, "stop_sequence": None}
    output_usage = {"output_tokens": turn.usage["completion_tokens"]}
    chunks.append(_Chunk(event("message_delta", delta=closing_delta, usage=output_usage), False))
    chunks.append(_Chunk(event("message_stop"), False))
    return chunks


def _malformed_stream(dialect: str) -> list[_Chunk]:
    if dialect == _ANTHROPIC:
        return [_Chunk(b"event: message_start\ndata: {not json\n\n", False)]
    return [_Chunk(b"data: {not json\n\n", False), _Chunk(b"data: [DONE]\n\n", False)]


def _error_body(dialect: str | None, status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if dialect == _OPENAI:
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    # Anthropic's shape; also used off the completion routes, where either kind
    # of client can still find error.message in it.
    return {"type": "error", "error": {"type": kind, "message": message}}


def _models_body() -> dict[str, Any]:
    model = {
        "id": DEFAULT_MODEL,
        "object": "model",
        "type": "model",
        "created": 0,
        "owned_by": "scripted",
        "display_name": "Scripted model",
    }
    return {"object": "list", "data": [model], "has_more": False}


# --------------------------------------------------------------------------- HTTP


class _ConnectionLost(Exception):
    """The connection ended under us: the client left, or the server is stopping."""


class _ScriptedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Handlers may be hanging on purpose; closing the server must not wait for them.
    block_on_close = False

    def __init__(self, address: tuple[str, int], script: dict[str, Any], recorder: _Recorder):
        self.script = script
        self.recorder = recorder
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._next_step = 0
        self._next_tool_id = 0
        self._connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup we never use, and it
        # can stall for seconds on a machine with a broken resolver.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def claim_step(self) -> tuple[int, dict[str, Any] | None]:
        """Take the next step index; the step is None once the script is used up."""
        with self._lock:
            n = self._next_step
            self._next_step += 1
        steps = self.script["steps"]
        if n < len(steps):
            return n, steps[n]
        if self.script["when_exhausted"] == "repeat_last" and steps:
            return n, steps[-1]
        return n, None

    def new_tool_id(self, prefix: str) -> str:
        with self._lock:
            self._next_tool_id += 1
            return f"{prefix}{self._next_tool_id}"

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake every handler blocked on a socket so that its thread can end."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # The other side may have closed it already.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        # A client vanishing mid-request is routine here, not worth a traceback.
        if isinstance(error, (ConnectionError, TimeoutError)) or self.stopping.is_set():
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ScriptedLLM/1.0"
    # Requests too broken to route (bad request line, unknown method) still get a JSON error.
    error_content_type = "application/json"
    error_message_format = '{"type": "error", "error": {"type": "invalid_request_error", "message": "%(message)s"}}'
    server: _ScriptedHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the recorded events are the log."""

    # -- entry points

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            if path == "/health":
                self._send_bytes(200, b"ok", "text/plain; charset=utf-8")
            elif path in ("/v1/models", "/models"):
                self._send_json(200, _models_body())
            else:
                self._send_json(404, _error_body(None, 404, f"no such endpoint: GET {path}"))
        except _ConnectionLost:
            self.close_connection = True

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        dialect = _COMPLETION_ROUTES.get(path)
        n: int | None = None
        try:
            raw = self._read_body()
            if dialect is None:
                self._send_json(404, _error_body(None, 404, f"no such endpoint: POST {path}"))
                return
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                # Not a step's worth of request: answer without consuming one.
                text = raw.decode("utf-8", "replace")
                self._record_request(None, text)
                message = "scripted server: request body must be a JSON object"
                self._send_json(400, _error_body(dialect, 400, message))
                self.server.recorder.record("response_done", n=None, status=400)
                return
            n, step = self.server.claim_step()
            self._record_request(n, body)
            status = self._play(dialect, n, step, body)
            if status is not None:
                self.server.recorder.record("response_done", n=n, status=status)
        except _ConnectionLost:
            self.close_connection = True
            if not self.server.stopping.is_set():
                self.server.recorder.record("client_disconnected", n=n)

    # -- the scripted behaviour

    def _play(self, dialect: str, n: int, step: dict[str, Any] | None, body: dict) -> int | None:
        """Answer one completion request as the step says.

        Returns the HTTP status sent, or None when no complete response went out.
        """
        if step is None:
            used = len(self.server.script["steps"])
            message = f"scripted server: script exhausted after {used} responses"
            return self._send_json(400, _error_body(dialect, 400, message))
        self._wait_watching_client(step.get("delay", 0))
        extra_headers: dict[str, str] = step.get("headers", {})
        expected_key = step.get("expect_api_key")
        if expected_key is not None and not self._has_api_key(dialect, expected_key):
            message = "scripted server: missing or wrong API key"
            return self._send_json(401, _error_body(dialect, 401, message), extra_headers)
        if step.get("hang"):
            self._wait_watching_client(None)
        if step.get("drop"):
            self._drop(n)
            return None
        if "status" in step:
            message = step.get("error", f"scripted error {step['status']}")
            body_out = _error_body(dialect, step["status"], message)
            return self._send_json(step["status"], body_out, extra_headers)

        turn = self._make_turn(dialect, n, step, body)
        render_stream = _anthropic_stream if dialect == _ANTHROPIC else _openai_stream
        if body.get("stream") is True:
            chunks = _malformed_stream(dialect) if step.get("malformed") else render_stream(turn)
            return self._send_stream(n, step, chunks, extra_headers)
        if step.get("malformed"):
            broken = b'{"id": "malformed", "choices": [{"message": '
            return self._send_bytes(200, broken, "application/json", extra_headers)
        # A slow step is as slow without streaming: pay every chunk delay up front.
        paced_chunks = sum(chunk.paced for chunk in render_stream(turn))
        self._wait_watching_client(step.get("chunk_delay", 0) * paced_chunks)
        render = _anthropic_message if dialect == _ANTHROPIC else _openai_completion
        return self._send_json(200, render(turn), extra_headers)

    def _make_turn(self, dialect: str, n: int, step: dict[str, Any], body: dict) -> _Turn:
        prefix = "toolu_" if dialect == _ANTHROPIC else "call_"
        calls = [
            _ToolCall(
                id=call.get("id") or self.server.new_tool_id(prefix),
                name=call["name"],
                arguments=call.get("arguments", {}),
            )
            for call in step.get("tool_calls", [])
        ]
        content, reasoning = step.get("content", ""), step.get("reasoning", "")
        output_chars = len(content) + len(reasoning)
        output_chars += sum(len(call.name) + len(call.arguments_json) for call in calls)
        prompt_chars = _text_chars(body.get("messages")) + _text_chars(body.get("system"))
        usage = {
            "prompt_tokens": max(1, prompt_chars // 4),
            "completion_tokens": max(1, output_chars // 4),
            **step.get("usage", {}),
        }
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage")
        model = body.get("model")
        return _Turn(
            n=n,
            model=model if isinstance(model, str) and model else DEFAULT_MODEL,
            created=int(time.time()),
            content=content,
            reasoning=reasoning,
            tool_calls=calls,
            usage=usage,
            chunk_chars=step.get("chunk_chars", 8),
            include_usage=include_usage is True,
        )

    def _has_api_key(self, dialect: str, key: str) -> bool:
        if dialect == _ANTHROPIC:
            return self.headers.get("x-api-key") == key
        return self.headers.get("Authorization") == f"Bearer {key}"

    def _record_request(self, n: int | None, body: Any) -> None:
        headers = {
            name.lower(): "<redacted>" if name.lower() in _REDACTED_HEADERS else value
            for name, value in self.headers.items()
        }
        self.server.recorder.record("request", n=n, path=self.path, headers=headers, body=body)

    # -- waiting and misbehaving

    def _wait_watching_client(self, seconds: float | None) -> None:
        """Wait `seconds` (None: forever) unless the client leaves or the server stops.

        Both of those raise _ConnectionLost, so a hang always ends one way or the other.
        """
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            if self.server.stopping.is_set():
                raise _ConnectionLost("server stopping")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            timeout = _POLL_SECONDS if remaining is None else min(remaining, _POLL_SECONDS)
            readable, _, _ = select.select([self.connection], [], [], timeout)
            if not readable:
                continue
            if self._client_has_closed():
                raise _ConnectionLost("client closed the connection")
            # Pipelined bytes are waiting, which says nothing about the client
            # leaving; sleep instead of spinning on a socket that stays readable.
            self.server.stopping.wait(timeout)

    def _client_has_closed(self) -> bool:
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _drop(self, n: int) -> None:
        self.close_connection = True
        # Recorded first, so it is there by the time the client sees the failure.
        self.server.recorder.record("dropped", n=n)
        # The client may have got there first.
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _stream_interrupted(self, n: int, step: dict[str, Any], sent: int) -> bool:
        """Act out hang_after_chunks / drop_after_chunks; True when the stream is over."""
        if step.get("hang_after_chunks") == sent:
            self._wait_watching_client(None)
        if step.get("drop_after_chunks") == sent:
            self._drop(n)
            return True
        return False

    # -- writing

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError as exc:
            raise _ConnectionLost(str(exc)) from exc

    def _start_response(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        try:
            self.end_headers()
        except OSError as exc:
            raise _ConnectionLost(str(exc)) from exc

    def _send_bytes(self, status: int, data: bytes, content_type: str, extra: dict[str, str] | None = None) -> int:
        headers = {"Content-Type": content_type, "Content-Length": str(len(data)), **(extra or {})}
        self._start_response(status, headers)
        self._write(data)
        return status

    def _send_json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> int:
        return self._send_bytes(status, json.dumps(payload).encode(), "application/json", extra)

    def _send_stream(self, n: int, step: dict[str, Any], chunks: list[_Chunk], extra: dict[str, str]) -> int | None:
        headers = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
            **extra,
        }
        self._start_response(200, headers)
        delay = step.get("chunk_delay", 0)
        for sent, chunk in enumerate(chunks):
            if self._stream_interrupted(n, step, sent):
                return None
            if chunk.paced:
                self._wait_watching_client(delay)
            self._write(b"%x\r\n%s\r\n" % (len(chunk.data), chunk.data))
        if self._stream_interrupted(n, step, len(chunks)):
            return None
        self._write(b"0\r\n\r\n")
        return 200

    # -- reading

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked_body(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        # Trailer fields, if any, end with a blank line.
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(parts)


# --------------------------------------------------------------------------- public API


class ScriptedServer:
    """A scripted server running on a background thread of this process.

    Use start_server() to make one; stop it with stop() or a `with` block.
    """

    def __init__(self, httpd: _ScriptedHTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self._stop_lock = threading.Lock()
        self._stopped = False

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The port the server listens on (the real one when 0 was asked for)."""
        return int(self._httpd.server_address[1])

    @property
    def base(self) -> str:
        """The server root, e.g. http://127.0.0.1:PORT."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base URL that clients append /chat/completions or /messages to."""
        return f"{self.base}/v1"

    def events(self) -> list[dict[str, Any]]:
        """Return a copy of every event recorded so far, oldest first."""
        return self._httpd.recorder.snapshot()

    def requests(self) -> list[Any]:
        """Return the bodies of the completion requests received so far, oldest first."""
        return [event["body"] for event in self.events() if event["event"] == "request"]

    def wait_for(self, event: str, n: int | None = None, timeout: float = 5.0) -> dict[str, Any] | None:
        """Wait until an event of that name (and step index n, if given) is recorded.

        Returns the first such event, or None if none came within timeout seconds.
        """
        return self._httpd.recorder.wait_for(event, n, timeout)

    def stop(self) -> None:
        """Stop serving and end every open connection, hanging ones included.

        Returns within a fraction of a second; calling it again does nothing.
        """
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        # Set first, so that handlers woken below know it was not the client leaving.
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        self._thread.join(timeout=2.0)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_server(
    script: dict[str, Any],
    host: str = "127.0.0.1",
    port: int = 0,
    log_path: str | None = None,
) -> ScriptedServer:
    """Validate `script` and start serving it on a background thread.

    Port 0 picks a free port; read the real one from the result's `url`. When
    log_path is given, events are also appended to that file as JSON lines.
    Raises ScriptError for a bad script and OSError when it cannot listen.
    """
    checked = validate_script(script)
    httpd = _ScriptedHTTPServer((host, port), checked, _Recorder(log_path))
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": _POLL_SECONDS},
        name=f"scripted-server-{httpd.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return ScriptedServer(httpd, thread)


# --------------------------------------------------------------------------- command line


def _write_atomically(path: str, text: str) -> None:
    # Whoever polls for the file must never see it half-written.
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """Serve a script file in the foreground until SIGTERM or SIGINT; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m supervisor.scripted_server",
        description="Serve scripted OpenAI / Anthropic API responses on a local port.",
    )
    parser.add_argument("--script", required=True, help="JSON script file")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--log", help="append recorded events to this JSON-lines file")
    parser.add_argument("--ready-file", help="write the base URL here once listening")
    args = parser.parse_args(argv)

    try:
        script = load_script(args.script)
    except ScriptError as exc:
        print(f"scripted_server: {exc}", file=sys.stderr)
        return 2

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        server = start_server(script, host=args.host, port=args.port, log_path=args.log)
    except OSError as exc:
        print(f"scripted_server: cannot start: {exc}", file=sys.stderr)
        return 1
    with server:
        print(server.url, flush=True)
        if args.ready_file:
            try:
                _write_atomically(args.ready_file, server.url)
            except OSError as exc:
                print(f"scripted_server: cannot write ready file: {exc}", file=sys.stderr)
                return 1
        stop_requested.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
