"""A scripted HTTP server that speaks the LLM wire formats: OpenAI chat completions,
the OpenAI Responses API and Anthropic messages.

The test suite and the keyless demo point real clients at it. Each POST to a
completion endpoint consumes the next step of a JSON script; a step says what
the "model" answers and how the transport misbehaves (delays, hangs, dropped
connections, malformed bodies, error statuses). Everything that happens on the
wire is recorded as events so that tests can assert on it.

Script format::

    {"steps": [step, ...], "when_exhausted": "error" | "repeat_last"}

Step keys, all optional: content, reasoning, redacted_thinking (Anthropic),
tool_calls, chunk_chars, chunk_delay, delay, status, error, headers, hang, hang_after_chunks, drop,
drop_after_chunks, malformed, usage, expect_api_key, and for odd answers:
truncated (cut off by the output limit), omit_tool_ids, stream_error (an error
type sent inside the stream after its first event, with `error` as message),
whole_answer (a JSON body to a streamed request), raw_body with content_type
(exactly these bytes), chunk_bytes (HTTP chunks of that many bytes, raw UTF-8,
cutting through characters) and split_surrogates (text deltas cut in UTF-16 code
units). A tool call is {name, arguments, id, raw_arguments}. The "chunks"
counted by the *_after_chunks keys are server-sent events, including the
opening ones (role chunk, message_start, ping) and the closing ones.

A step's reasoning streams before its answer, on every wire: `reasoning_content`
deltas on chat completions, a reasoning item with its summary streamed and its
reasoning sealed in `encrypted_content` on the Responses API, a `thinking` block
whose signature comes last on Anthropic (module signing). The checkers refuse
reasoning that comes back changed or out of place, as the real APIs do.

Every completion request first goes through its wire's strict checker (unless
the server is started lenient): a request the real API would refuse gets that
API's 400 and a "rejected" event, and uses up no step.

Recorded events::

    {"event": "request", "n", "path", "headers", "body", "t"}
    {"event": "response_done", "n", "status", "t"}
    {"event": "client_disconnected", "n", "t"}
    {"event": "dropped", "n", "t"}
    {"event": "rejected", "n": null, "problems", "t"}

Modules: script (the step format), handler (HTTP), server (start_server and
ScriptedServer), cli (the command line), recorder (the events), turn (what the
wire modules share), one module per wire (openai_chat, openai_responses,
anthropic_messages), each with its strict request checker (check_openai_chat,
check_openai_responses, check_anthropic_messages with check_anthropic_thinking),
signing (the reasoning seals), and wires (the routes that select a wire).

Command line::

    python -m supervisor.scripted_server --script FILE [--port N]
        [--host 127.0.0.1] [--log FILE] [--ready-file FILE] [--lenient]
"""

from supervisor.scripted_server.cli import main
from supervisor.scripted_server.handler import DEFAULT_MODEL
from supervisor.scripted_server.script import ScriptError, load_script, validate_script
from supervisor.scripted_server.server import ScriptedServer, start_server

__all__ = [
    "DEFAULT_MODEL",
    "ScriptError",
    "ScriptedServer",
    "load_script",
    "main",
    "start_server",
    "validate_script",
]
