"""Tests for supervisor.scripted_server, over real HTTP against the real server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from supervisor.scripted_server import ScriptedServer, ScriptError, start_server

REPO_ROOT = Path(__file__).resolve().parent.parent
USER_MESSAGE = {"role": "user", "content": "What is the weather like in Paris today?"}

StartServer = Callable[..., ScriptedServer]


@pytest.fixture
def serve() -> Iterator[StartServer]:
    """Start scripted servers from steps; every one is stopped after the test."""
    servers: list[ScriptedServer] = []

    def start(*steps: dict[str, Any], **options: Any) -> ScriptedServer:
        log_path = options.pop("log_path", None)
        server = start_server({"steps": list(steps), **options}, log_path=log_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def valid(body: dict[str, Any], **required: Any) -> dict[str, Any]:
    """`body` with what the strict checker requires filled in where the test left it out."""
    return {"model": "scripted-test", **required, **body, "messages": body.get("messages") or [USER_MESSAGE]}


def openai_post(server: ScriptedServer, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    return requests.post(f"{server.url}/chat/completions", json=valid(body), timeout=kwargs.pop("timeout", 5),
                         **kwargs)


def anthropic_post(server: ScriptedServer, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    return requests.post(f"{server.url}/messages", json=valid(body, max_tokens=256), timeout=kwargs.pop("timeout", 5),
                         **kwargs)


def openai_chunks(response: requests.Response) -> list[dict[str, Any]]:
    """Parse an OpenAI SSE body, checking that it ends with [DONE]."""
    payloads = [line[len("data: ") :] for line in response.iter_lines(decode_unicode=True) if line]
    assert payloads[-1] == "[DONE]"
    return [json.loads(payload) for payload in payloads[:-1]]


def anthropic_events(response: requests.Response) -> list[tuple[str, dict[str, Any]]]:
    """Parse an Anthropic SSE body into (event name, data) pairs."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: ") :])
            assert data["type"] == name
            events.append((name, data))
    return events


# --------------------------------------------------------------------------- plain endpoints


def test_health_models_and_unknown_paths(serve: StartServer) -> None:
    server = serve()
    health = requests.get(f"{server.base}/health", timeout=5)
    assert (health.status_code, health.text) == (200, "ok")
    models = requests.get(f"{server.url}/models", timeout=5).json()
    assert models["object"] == "list" and models["data"][0]["id"]
    missing = requests.post(f"{server.url}/completions", json={}, timeout=5)
    assert missing.status_code == 404
    assert "no such endpoint" in missing.json()["error"]["message"]
    assert requests.get(f"{server.base}/nothing", timeout=5).status_code == 404
    # Only completion requests consume steps and get recorded.
    assert server.requests() == []


# --------------------------------------------------------------------------- OpenAI format


def test_openai_text_response(serve: StartServer) -> None:
    server = serve({"content": "It is sunny."})
    body = {"model": "gpt-test", "messages": [USER_MESSAGE]}
    response = openai_post(server, body)
    assert response.status_code == 200
    reply = response.json()
    assert reply["object"] == "chat.completion"
    assert reply["model"] == "gpt-test"
    choice = reply["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "It is sunny."}
    assert choice["finish_reason"] == "stop"
    prompt_chars = len("user") + len(USER_MESSAGE["content"])
    assert reply["usage"] == {
        "prompt_tokens": prompt_chars // 4,
        "completion_tokens": len("It is sunny.") // 4,
        "total_tokens": prompt_chars // 4 + len("It is sunny.") // 4,
    }
    assert server.requests() == [body]
    assert server.wait_for("response_done", n=0, timeout=1) is not None


def test_openai_tool_calls_response(serve: StartServer) -> None:
    calls = [
        {"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}},
        {"name": "get_time", "arguments": {}, "id": "call_fixed"},
    ]
    server = serve({"reasoning": "Need the weather.", "tool_calls": calls})
    message = openai_post(server, {"messages": [USER_MESSAGE]}).json()["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    assert message["message"]["content"] is None
    assert message["message"]["reasoning_content"] == "Need the weather."
    tool_calls = message["message"]["tool_calls"]
    assert [call["id"] for call in tool_calls] == ["call_1", "call_fixed"]
    assert all(call["type"] == "function" for call in tool_calls)
    assert tool_calls[0]["function"]["name"] == "get_weather"
    assert json.loads(tool_calls[0]["function"]["arguments"]) == {"city": "Paris", "days": [1, 2]}
    assert json.loads(tool_calls[1]["function"]["arguments"]) == {}


def test_openai_stream_reassembles_text_and_tool_arguments(serve: StartServer) -> None:
    arguments = {"path": "/tmp/notes.txt", "text": "line one\nline two", "append": True}
    step = {
        "reasoning": "Let me write it down.",
        "content": "Writing the file now.",
        "tool_calls": [{"name": "write_file", "arguments": arguments}],
        "chunk_chars": 5,
    }
    server = serve(step)
    response = openai_post(server, {"messages": [USER_MESSAGE], "stream": True}, stream=True)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    chunks = openai_chunks(response)
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0]["role"] == "assistant"

    content_pieces = [delta["content"] for delta in deltas if delta.get("content")]
    assert "".join(content_pieces) == "Writing the file now."
    assert len(content_pieces) > 1 and all(len(piece) <= 5 for piece in content_pieces)
    reasoning = "".join(delta.get("reasoning_content", "") for delta in deltas)
    assert reasoning == "Let me write it down."
    # Reasoning streams before the answer text.
    first_reasoning = next(i for i, d in enumerate(deltas) if "reasoning_content" in d)
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert first_reasoning < first_content

    call_deltas = [call for delta in deltas for call in delta.get("tool_calls", [])]
    assert call_deltas[0]["id"] == "call_1" and call_deltas[0]["function"]["name"] == "write_file"
    assert all(call["index"] == 0 for call in call_deltas)
    fragments = [call["function"]["arguments"] for call in call_deltas]
    assert len([f for f in fragments if f]) > 3
    assert json.loads("".join(fragments)) == arguments
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_stream_include_usage_with_overrides(serve: StartServer) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 3, "reasoning_tokens": 2}
    server = serve({"content": "Done.", "usage": usage})
    body = {"messages": [USER_MESSAGE], "stream": True, "stream_options": {"include_usage": True}}
    chunks = openai_chunks(openai_post(server, body, stream=True))
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 3},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    assert all(chunk["usage"] is None for chunk in chunks[:-1])


# --------------------------------------------------------------------------- Anthropic format


def test_anthropic_message_response(serve: StartServer) -> None:
    step = {
        "reasoning": "Check the tool.",
        "content": "Looking it up.",
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "cached_tokens": 12},
    }
    server = serve(step)
    reply = anthropic_post(server, {"model": "claude-test", "system": "Be brief.", "messages": [USER_MESSAGE]}).json()
    assert reply["type"] == "message" and reply["role"] == "assistant"
    assert reply["model"] == "claude-test"
    assert reply["stop_reason"] == "tool_use" and reply["stop_sequence"] is None
    assert [block["type"] for block in reply["content"]] == ["thinking", "text", "tool_use"]
    assert reply["content"][0]["thinking"] == "Check the tool."
    assert reply["content"][1]["text"] == "Looking it up."
    assert reply["content"][2] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert reply["usage"] == {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 12}


def test_anthropic_text_only_ends_turn(serve: StartServer) -> None:
    server = serve({"content": "Hello."})
    reply = anthropic_post(server, {"messages": [USER_MESSAGE]}).json()
    assert reply["content"] == [{"type": "text", "text": "Hello."}]
    assert reply["stop_reason"] == "end_turn"


def test_anthropic_stream_reassembles_text_and_tool_input(serve: StartServer) -> None:
    arguments = {"command": "ls -la /tmp", "timeout": 30}
    step = {
        "content": "I will list the directory.",
        "tool_calls": [{"name": "bash", "arguments": arguments, "id": "toolu_given"}],
        "chunk_chars": 4,
    }
    server = serve(step)
    events = anthropic_events(anthropic_post(server, {"messages": [USER_MESSAGE], "stream": True}, stream=True))
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert events[0][1]["message"]["content"] == []

    starts = {data["index"]: data["content_block"] for name, data in events if name == "content_block_start"}
    assert starts[0]["type"] == "text"
    assert starts[1] == {"type": "tool_use", "id": "toolu_given", "name": "bash", "input": {}}
    deltas = [data for name, data in events if name == "content_block_delta"]
    text = "".join(d["delta"]["text"] for d in deltas if d["delta"]["type"] == "text_delta")
    partial = "".join(d["delta"]["partial_json"] for d in deltas if d["delta"]["type"] == "input_json_delta")
    assert text == "I will list the directory."
    assert json.loads(partial) == arguments
    assert all(d["index"] == 1 for d in deltas if d["delta"]["type"] == "input_json_delta")
    assert names.count("content_block_stop") == 2

    message_delta = next(data for name, data in events if name == "message_delta")
    assert message_delta["delta"]["stop_reason"] == "tool_use"
    assert message_delta["usage"]["output_tokens"] >= 1


def test_anthropic_stream_thinking_block(serve: StartServer) -> None:
    server = serve({"reasoning": "Hmm, let me think.", "content": "Yes.", "chunk_chars": 3})
    events = anthropic_events(anthropic_post(server, {"messages": [USER_MESSAGE], "stream": True}, stream=True))
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    thinking = "".join(delta["thinking"] for delta in deltas if delta["type"] == "thinking_delta")
    assert thinking == "Hmm, let me think."


# --------------------------------------------------------------------------- errors and misbehaviour


def test_error_status_with_retry_after(serve: StartServer) -> None:
    limited = {"status": 429, "error": "slow down", "headers": {"Retry-After": "1"}}
    server = serve(limited, limited)
    openai_reply = openai_post(server, {"messages": [USER_MESSAGE]})
    assert openai_reply.status_code == 429
    assert openai_reply.headers["Retry-After"] == "1"
    assert openai_reply.json()["error"]["message"] == "slow down"
    assert openai_reply.json()["error"]["type"] == "rate_limit_error"
    anthropic_reply = anthropic_post(server, {"messages": [USER_MESSAGE]})
    assert anthropic_reply.status_code == 429
    assert anthropic_reply.json() == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}


def test_drop_gives_connection_error(serve: StartServer) -> None:
    server = serve({"drop": True})
    with pytest.raises(requests.ConnectionError):
        openai_post(server, {"messages": [USER_MESSAGE]})
    assert server.wait_for("dropped", n=0, timeout=1) is not None
    assert server.wait_for("response_done", n=0, timeout=0.2) is None


def test_drop_after_chunks_cuts_the_stream(serve: StartServer) -> None:
    server = serve({"content": "a" * 40, "chunk_chars": 2, "drop_after_chunks": 3})
    response = openai_post(server, {"messages": [USER_MESSAGE], "stream": True}, stream=True)
    lines: list[str] = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        lines.extend(line for line in response.iter_lines(decode_unicode=True) if line)
    assert len(lines) == 3
    assert "[DONE]" not in "".join(lines)


def test_malformed_bodies(serve: StartServer) -> None:
    server = serve({"malformed": True}, {"malformed": True})
    plain = openai_post(server, {"messages": [USER_MESSAGE]})
    assert plain.status_code == 200
    with pytest.raises(ValueError):
        plain.json()
    streamed = openai_post(server, {"messages": [USER_MESSAGE], "stream": True}, stream=True)
    data_lines = [line for line in streamed.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    with pytest.raises(ValueError):
        json.loads(data_lines[0][len("data: ") :])


def test_hang_until_client_times_out(serve: StartServer) -> None:
    server = serve({"hang": True})
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        openai_post(server, {"messages": [USER_MESSAGE]}, timeout=0.3)
    assert time.monotonic() - started < 2
    assert server.wait_for("client_disconnected", n=0, timeout=3) is not None
    assert server.wait_for("response_done", timeout=0.1) is None


def first_lines(response: requests.Response, count: int) -> list[str]:
    """Read `count` non-empty lines of a streamed body, leaving the rest unread.

    The iterator is kept on the response: dropping a half-read iterator makes
    urllib3 close the connection, which would end the stream too early.
    """
    lines = response.iter_lines(decode_unicode=True)
    response.__dict__["_test_lines"] = lines
    received: list[str] = []
    while len(received) < count:
        line = next(lines)
        if line:
            received.append(line)
    return received


def test_client_closing_mid_stream_is_recorded(serve: StartServer) -> None:
    server = serve({"content": "x" * 60, "chunk_chars": 2, "chunk_delay": 0.05})
    response = openai_post(server, {"messages": [USER_MESSAGE], "stream": True}, stream=True)
    assert len(first_lines(response, 2)) == 2
    response.close()
    assert server.wait_for("client_disconnected", n=0, timeout=3) is not None
    assert server.wait_for("response_done", n=0, timeout=0.1) is None


def test_hang_after_chunks_then_client_leaves(serve: StartServer) -> None:
    server = serve({"content": "partial answer", "hang_after_chunks": 2})
    response = anthropic_post(server, {"messages": [USER_MESSAGE], "stream": True}, stream=True)
    received = first_lines(response, 4)
    assert [line for line in received if line.startswith("event: ")] == ["event: message_start", "event: ping"]
    # Silent, but the connection stays open until the client gives up.
    assert server.wait_for("client_disconnected", timeout=0.3) is None
    response.close()
    assert server.wait_for("client_disconnected", n=0, timeout=3) is not None


def test_delays_slow_down_non_streaming_answers(serve: StartServer) -> None:
    server = serve({"delay": 0.2}, {"content": "abcdefgh", "chunk_chars": 2, "chunk_delay": 0.05})
    started = time.monotonic()
    openai_post(server, {"messages": [USER_MESSAGE]})
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    reply = openai_post(server, {"messages": [USER_MESSAGE]}).json()
    # Four text chunks of 0.05 s each.
    assert time.monotonic() - started >= 0.2
    assert reply["choices"][0]["message"]["content"] == "abcdefgh"


# --------------------------------------------------------------------------- script handling


def test_script_exhausted_answers_400(serve: StartServer) -> None:
    server = serve({"content": "only once"})
    assert openai_post(server, {"messages": [USER_MESSAGE]}).status_code == 200
    exhausted = openai_post(server, {"messages": [USER_MESSAGE]})
    assert exhausted.status_code == 400
    assert exhausted.json()["error"]["message"] == "scripted server: script exhausted after 1 responses"
    assert [event["n"] for event in server.events() if event["event"] == "request"] == [0, 1]


def test_repeat_last_keeps_answering(serve: StartServer) -> None:
    server = serve({"content": "first"}, {"content": "again"}, when_exhausted="repeat_last")
    contents = [openai_post(server, {"messages": []}).json()["choices"][0]["message"]["content"] for _ in range(4)]
    assert contents == ["first", "again", "again", "again"]


def test_concurrent_requests_take_distinct_steps(serve: StartServer) -> None:
    server = serve(*({"content": f"answer {i}"} for i in range(8)))
    answers: list[str] = []

    def ask() -> None:
        reply = openai_post(server, {"messages": [USER_MESSAGE]}).json()
        answers.append(reply["choices"][0]["message"]["content"])

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert sorted(answers) == sorted(f"answer {i}" for i in range(8))


@pytest.mark.parametrize(
    "script",
    [
        {"steps": "not a list"},
        {"steps": [{"contnet": "typo"}]},
        {"steps": [{"delay": True}]},
        {"steps": [{"chunk_chars": 0}]},
        {"steps": [{"chunk_bytes": 0}]},
        {"steps": [{"truncated": "yes"}]},
        {"steps": [{"tool_calls": [{"arguments": {}}]}]},
        {"steps": [{"tool_calls": [{"name": "t", "raw_arguments": {"not": "text"}}]}]},
        {"steps": [], "when_exhausted": "loop"},
    ],
)
def test_bad_scripts_are_rejected(script: dict[str, Any]) -> None:
    with pytest.raises(ScriptError):
        start_server(script)


def test_odd_answers_render_as_each_api_sends_them(serve: StartServer) -> None:
    server = serve(
        {"content": "cut", "truncated": True},
        {"content": "cut", "truncated": True},
        {"stream_error": "overloaded_error", "error": "busy"},
        {"stream_error": "overloaded_error", "error": "busy"},
        {"omit_tool_ids": True, "tool_calls": [{"name": "t"}]},
        {"whole_answer": True, "content": "whole"},
    )
    assert openai_post(server, {}).json()["choices"][0]["finish_reason"] == "length"
    assert anthropic_post(server, {}).json()["stop_reason"] == "max_tokens"
    streamed = openai_post(server, {"stream": True}, stream=True).text
    assert 'data: {"error": {"message": "busy", "type": "overloaded_error"' in streamed
    events = anthropic_post(server, {"stream": True}, stream=True).text
    assert "event: error\ndata: " in events and '"overloaded_error"' in events
    call = openai_post(server, {}).json()["choices"][0]["message"]["tool_calls"][0]
    assert "id" not in call
    whole = openai_post(server, {"stream": True}, stream=True)
    assert whole.headers["Content-Type"] == "application/json"
    assert whole.json()["choices"][0]["message"]["content"] == "whole"


# --------------------------------------------------------------------------- API keys and recording


def test_expect_api_key_and_redaction(serve: StartServer) -> None:
    secret = "sk-test-very-secret"
    guarded = {"content": "welcome", "expect_api_key": secret}
    server = serve(guarded, guarded, guarded, guarded)
    assert openai_post(server, {"messages": [USER_MESSAGE]}).status_code == 401
    authorised = openai_post(server, {"messages": [USER_MESSAGE]}, headers={"Authorization": f"Bearer {secret}"})
    assert authorised.status_code == 200
    wrong_header = anthropic_post(server, {"messages": [USER_MESSAGE]}, headers={"Authorization": f"Bearer {secret}"})
    assert wrong_header.status_code == 401
    assert wrong_header.json()["type"] == "error"
    assert anthropic_post(server, {"messages": [USER_MESSAGE]}, headers={"x-api-key": secret}).status_code == 200

    requests_seen = [event for event in server.events() if event["event"] == "request"]
    assert requests_seen[1]["headers"]["authorization"] == "<redacted>"
    assert requests_seen[3]["headers"]["x-api-key"] == "<redacted>"
    assert secret not in json.dumps(server.events())


def test_log_file_gets_every_event(serve: StartServer, tmp_path: Path) -> None:
    log_path = tmp_path / "events.jsonl"
    server = serve({"content": "logged"}, log_path=str(log_path))
    openai_post(server, {"messages": [USER_MESSAGE]}, headers={"Authorization": "Bearer sk-hidden"})
    assert server.wait_for("response_done", n=0) is not None
    logged = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [entry["event"] for entry in logged] == ["request", "response_done"]
    assert logged[0]["body"] == valid({"messages": [USER_MESSAGE]})
    assert logged[0]["headers"]["authorization"] == "<redacted>"
    assert all(isinstance(entry["t"], float) for entry in logged)
    assert "sk-hidden" not in log_path.read_text()


# --------------------------------------------------------------------------- connections and lifecycle


def test_keep_alive_reuses_one_connection(serve: StartServer) -> None:
    server = serve({"content": "one"}, {"content": "two", "chunk_chars": 1})
    endpoint = f"{server.url}/chat/completions"
    with requests.Session() as session:
        first = session.post(endpoint, json=valid({}), timeout=5, stream=True)
        first_port = first.raw.connection.sock.getsockname()[1]
        assert first.json()["choices"][0]["message"]["content"] == "one"
        second = session.post(endpoint, json=valid({"stream": True}), timeout=5, stream=True)
        second_port = second.raw.connection.sock.getsockname()[1]
        assert "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in openai_chunks(second)) == "two"
    assert first_port == second_port


def test_stop_closes_idle_keep_alive_connections(serve: StartServer) -> None:
    server = serve({"content": "one"}, {"content": "two"})
    with requests.Session() as session:
        assert session.post(f"{server.url}/chat/completions", json=valid({}), timeout=5).ok
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.post(f"{server.url}/chat/completions", json=valid({}), timeout=2)
    assert len(server.requests()) == 1


def test_stop_is_prompt_while_a_handler_hangs(serve: StartServer) -> None:
    server = serve({"hang": True})
    outcome: list[BaseException | requests.Response] = []

    def call() -> None:
        try:
            outcome.append(openai_post(server, {"messages": [USER_MESSAGE]}, timeout=10))
        except requests.RequestException as exc:
            outcome.append(exc)

    client = threading.Thread(target=call)
    client.start()
    assert server.wait_for("request", n=0, timeout=3) is not None
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    client.join(timeout=5)
    assert isinstance(outcome[0], requests.ConnectionError)
    # The server going away is not the client disconnecting.
    assert server.wait_for("client_disconnected", timeout=0.2) is None


def test_context_manager_stops_the_server() -> None:
    with start_server({"steps": []}) as server:
        assert requests.get(f"{server.base}/health", timeout=5).ok
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.base}/health", timeout=2)


# --------------------------------------------------------------------------- command line


def test_command_line_prints_url_and_exits_on_sigterm(tmp_path: Path) -> None:
    script_path = tmp_path / "script.json"
    script_path.write_text(json.dumps({"steps": [{"content": "from the cli"}]}))
    ready_path = tmp_path / "ready"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor.scripted_server",
            "--script",
            str(script_path),
            "--ready-file",
            str(ready_path),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not ready_path.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        assert ready_path.exists(), process.stderr.read() if process.poll() is not None else "no ready file"
        url = ready_path.read_text()
        assert process.stdout is not None
        assert process.stdout.readline().strip() == url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        reply = requests.post(f"{url}/chat/completions", json=valid({}), timeout=5).json()
        assert reply["choices"][0]["message"]["content"] == "from the cli"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "Traceback" not in stderr


def test_command_line_rejects_a_bad_script(tmp_path: Path) -> None:
    script_path = tmp_path / "script.json"
    script_path.write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.scripted_server", "--script", str(script_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not valid JSON" in result.stderr
