"""The HTTP side: a threading server whose handler plays one script step per completion request."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from supervisor.scripted_server import anthropic_messages
from supervisor.scripted_server.recorder import Recorder
from supervisor.scripted_server.turn import Chunk, ToolCall, Turn, Wire, text_chars
from supervisor.scripted_server.wires import ROUTES

DEFAULT_MODEL = "scripted-model"

# How often a waiting handler looks at the stop flag; bounds how long stop() can take.
POLL_SECONDS = 0.05

# Recorded events may end up in files and test output; secrets must not.
_REDACTED_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization"})


def _off_route_error(status: int, message: str) -> dict[str, Any]:
    # Anthropic's shape, in which either kind of client finds error.message.
    return anthropic_messages.error_body(status, message)


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


class ConnectionLost(Exception):
    """The connection ended under us: the client left, or the server is stopping."""


class ScriptedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Handlers may be hanging on purpose; closing the server must not wait for them.
    block_on_close = False

    def __init__(self, address: tuple[str, int], script: dict[str, Any], recorder: Recorder, strict: bool = True):
        self.script = script
        # Whether every completion request goes through its wire's strict checker first.
        self.strict = strict
        self.recorder = recorder
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._next_step = 0
        self._next_tool_id = 0
        self._connections: set[socket.socket] = set()
        super().__init__(address, Handler)

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ScriptedLLM/1.0"
    # Requests too broken to route (bad request line, unknown method) still get a JSON error.
    error_content_type = "application/json"
    error_message_format = '{"type": "error", "error": {"type": "invalid_request_error", "message": "%(message)s"}}'
    server: ScriptedHTTPServer

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
                self._send_json(404, _off_route_error(404, f"no such endpoint: GET {path}"))
        except ConnectionLost:
            self.close_connection = True

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        wire = ROUTES.get(path)
        n: int | None = None
        try:
            raw = self._read_body()
            if wire is None:
                self._send_json(404, _off_route_error(404, f"no such endpoint: POST {path}"))
                return
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                # Not a step's worth of request: answer without consuming one.
                self._record_request(None, raw.decode("utf-8", "replace"))
                self._refuse(wire, ["scripted server: request body must be a JSON object"])
                return
            if problems := (wire.check_request(body) if self.server.strict else []):
                # What the real API would answer with a 400; no step is used up.
                self._record_request(None, body)
                self.server.recorder.record("rejected", n=None, problems=problems)
                self._refuse(wire, problems)
                return
            n, step = self.server.claim_step()
            self._record_request(n, body)
            status = self._play(wire, n, step, body)
            if status is not None:
                self.server.recorder.record("response_done", n=n, status=status)
        except ConnectionLost:
            self.close_connection = True
            if not self.server.stopping.is_set():
                self.server.recorder.record("client_disconnected", n=n)

    def _refuse(self, wire: Wire, problems: list[str]) -> None:
        self._send_json(400, wire.error_body(400, "; ".join(problems)))
        self.server.recorder.record("response_done", n=None, status=400)

    # -- the scripted behaviour

    def _play(self, wire: Wire, n: int, step: dict[str, Any] | None, body: dict) -> int | None:
        """Answer one completion request as the step says.

        Returns the HTTP status sent, or None when no complete response went out.
        """
        if step is None:
            used = len(self.server.script["steps"])
            message = f"scripted server: script exhausted after {used} responses"
            return self._send_json(400, wire.error_body(400, message))
        self._wait_watching_client(step.get("delay", 0))
        extra_headers: dict[str, str] = step.get("headers", {})
        expected_key = step.get("expect_api_key")
        if expected_key is not None and not wire.has_api_key(self.headers, expected_key):
            message = "scripted server: missing or wrong API key"
            return self._send_json(401, wire.error_body(401, message), extra_headers)
        if step.get("hang"):
            self._wait_watching_client(None)
        if step.get("drop"):
            self._drop(n)
            return None
        streamed = body.get("stream") is True
        if "raw_body" in step:
            content_type = step.get("content_type", "text/event-stream" if streamed else "application/json")
            status = step.get("status", 200)
            return self._send_bytes(status, step["raw_body"].encode(), content_type, extra_headers)
        if "status" in step:
            message = step.get("error", f"scripted error {step['status']}")
            return self._send_json(step["status"], wire.error_body(step["status"], message), extra_headers)

        turn = self._make_turn(wire, n, step, body)
        if streamed and not step.get("whole_answer"):
            if step.get("malformed"):
                chunks = wire.malformed_stream()
            elif "stream_error" in step:
                message = step.get("error", f"scripted {step['stream_error']}")
                chunks = [*wire.render_stream(turn)[:1], wire.stream_error(step["stream_error"], message)]
            else:
                chunks = wire.render_stream(turn)
            return self._send_stream(n, step, chunks, extra_headers)
        if step.get("malformed"):
            return self._send_bytes(200, wire.malformed_body, "application/json", extra_headers)
        # A slow step is as slow without streaming: pay every chunk delay up front.
        paced_chunks = sum(chunk.paced for chunk in wire.render_stream(turn))
        self._wait_watching_client(step.get("chunk_delay", 0) * paced_chunks)
        return self._send_json(200, wire.render_body(turn), extra_headers)

    def _make_turn(self, wire: Wire, n: int, step: dict[str, Any], body: dict) -> Turn:
        omit_ids = step.get("omit_tool_ids", False)
        calls = [
            ToolCall(
                id="" if omit_ids else call.get("id") or self.server.new_tool_id(wire.tool_id_prefix),
                name=call["name"],
                arguments=call.get("arguments", {}),
                raw_arguments=call.get("raw_arguments"),
            )
            for call in step.get("tool_calls", [])
        ]
        content, reasoning = step.get("content", ""), step.get("reasoning", "")
        output_chars = len(content) + len(reasoning)
        output_chars += sum(len(call.name) + len(call.arguments_json) for call in calls)
        prompt_chars = sum(text_chars(body.get(key)) for key in wire.prompt_keys)
        usage = {
            "prompt_tokens": max(1, prompt_chars // 4),
            "completion_tokens": max(1, output_chars // 4),
            **step.get("usage", {}),
        }
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage")
        model = body.get("model")
        return Turn(
            n=n,
            model=model if isinstance(model, str) and model else DEFAULT_MODEL,
            created=int(time.time()),
            content=content,
            reasoning=reasoning,
            tool_calls=calls,
            usage=usage,
            chunk_chars=step.get("chunk_chars", 8),
            include_usage=include_usage is True,
            truncated=step.get("truncated", False),
            split_surrogates=step.get("split_surrogates", False),
            redacted_thinking=step.get("redacted_thinking", False),
            ascii_only="chunk_bytes" not in step,
        )

    def _record_request(self, n: int | None, body: Any) -> None:
        headers = {
            name.lower(): "<redacted>" if name.lower() in _REDACTED_HEADERS else value
            for name, value in self.headers.items()
        }
        self.server.recorder.record("request", n=n, path=self.path, headers=headers, body=body)

    # -- waiting and misbehaving

    def _wait_watching_client(self, seconds: float | None) -> None:
        """Wait `seconds` (None: forever) unless the client leaves or the server stops.

        Both of those raise ConnectionLost, so a hang always ends one way or the other.
        """
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            if self.server.stopping.is_set():
                raise ConnectionLost("server stopping")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            timeout = POLL_SECONDS if remaining is None else min(remaining, POLL_SECONDS)
            readable, _, _ = select.select([self.connection], [], [], timeout)
            if not readable:
                continue
            if self._client_has_closed():
                raise ConnectionLost("client closed the connection")
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
            raise ConnectionLost(str(exc)) from exc

    def _start_response(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        try:
            self.end_headers()
        except OSError as exc:
            raise ConnectionLost(str(exc)) from exc

    def _send_bytes(self, status: int, data: bytes, content_type: str, extra: dict[str, str] | None = None) -> int:
        headers = {"Content-Type": content_type, "Content-Length": str(len(data)), **(extra or {})}
        self._start_response(status, headers)
        self._write(data)
        return status

    def _send_json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> int:
        return self._send_bytes(status, json.dumps(payload).encode(), "application/json", extra)

    def _send_stream(self, n: int, step: dict[str, Any], chunks: list[Chunk], extra: dict[str, str]) -> int | None:
        headers = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
            **extra,
        }
        self._start_response(200, headers)
        delay = step.get("chunk_delay", 0)
        # With chunk_bytes, HTTP chunks of that many bytes, cutting across events and characters.
        size, pending = step.get("chunk_bytes"), b""
        for sent, chunk in enumerate(chunks):
            if self._stream_interrupted(n, step, sent):
                return None
            if chunk.paced:
                self._wait_watching_client(delay)
            if size is None:
                self._write_chunk(chunk.data)
                continue
            pending += chunk.data
            while len(pending) >= size:
                self._write_chunk(pending[:size])
                pending = pending[size:]
        if pending:
            self._write_chunk(pending)
        if self._stream_interrupted(n, step, len(chunks)):
            return None
        self._write(b"0\r\n\r\n")
        return 200

    def _write_chunk(self, data: bytes) -> None:
        self._write(b"%x\r\n%s\r\n" % (len(data), data))

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
