"""One agent run: the loop between the model and the tools, in the child process.

The loop sends the history to the model, runs the tools it asks for, records every
step in the conversation, and stops when the model calls `finish` (or answers with
no tool call), when a pause is requested, or when it is interrupted.

Stopping from outside is by signal. SIGINT raises `KeyboardInterrupt` in the main
thread wherever it is (usually blocked in a socket read inside `requests`), which
abandons the HTTP call and closes its connection; SIGTERM raises `Terminated` the
same way. Either one lands in `Run.stop_interrupted`, which records what was in
flight, ends the tool's processes and leaves the conversation `paused`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
import structlog

from agent_proc import conversation, llm, logs, output_times, pricing, reasoning
from agent_proc.conversation import Settings, Transaction, transaction
from agent_proc.environment import MARKER_ENV, SUPERVISOR_ENV, host_identity, process_start_ticks
from agent_proc.providers import parse_model
from agent_proc.status import Status
from agent_proc.tools import TOOL_SPECS, RunningCommand, describe_result

EXIT_FINISHED = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_PAUSED = 130

# The child's own backstop for --timeout and --llm-timeout acts this long after the
# supervisor would have: the limits hold even if the supervisor is stopped or dead.
BACKSTOP_DELAY = 1.0
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGALRM}


SYSTEM_PROMPT = """You are an autonomous agent working in the directory {workspace}.
Use the `terminal` tool to run shell commands there. Work step by step.
When the task is done, call `finish` with your final answer for the user."""

INTERRUPTED_RESULT = "[interrupted: this tool call did not complete because the run was stopped]"
CUT_OFF_NOTE = ("[The reply above was cut off before it was complete, because {why}. It is your own earlier "
                "output; any tool call in it was not run. Continue from where it stops, without repeating it.]")
MAX_TRUNCATIONS = 2  # replies cut off by the output limit in a row that the model may go on from
SKIPPED_RESULT = "[not run: the run was paused or finished before this tool call]"
SUPERSEDED_RESULT = "[not finished: the user sent a message before the run ended; answer it, then call finish]"


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM, like KeyboardInterrupt is by SIGINT."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


class RunTimedOut(BaseException):
    """Raised in the main thread by the backstop's SIGALRM: the run went past --timeout."""


def _raise_timed_out(signum: int, frame: Any) -> None:
    raise RunTimedOut()


def say(text: str) -> None:
    """Progress for people: the child's stderr is the conversation's output.log."""
    output_times.note(text)
    sys.stderr.write(text)
    sys.stderr.flush()


def become_subreaper() -> None:
    """Adopt orphaned descendants (a double-forked daemon, a `cmd &` whose shell
    exited), so they stay in our process tree and are ended with the run."""
    if sys.platform.startswith("linux"):
        PR_SET_CHILD_SUBREAPER = 36
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_orphans(spare: int | None = None) -> None:
    """Collect the exit status of adopted orphans that have ended, so none stays a zombie.

    `spare` is the pid of the tool process in flight: its status belongs to its
    `Popen`, so it is only looked at (WNOWAIT), never taken.
    """
    while True:
        try:
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if ended is None or ended.si_pid == spare:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(ended.si_pid, 0)


def child_pids() -> list[int] | None:
    """Our direct children (zombies included), read from /proc without scanning every
    process; None if that cannot be read."""
    pids: list[int] = []
    try:
        for tid in os.listdir("/proc/self/task"):
            pids += [int(pid) for pid in Path(f"/proc/self/task/{tid}/children").read_text().split()]
    except (OSError, ValueError):
        return None
    return pids


def end_descendants(seconds: float = 1.0) -> None:
    """Kill every process the run started that is still alive.

    As a subreaper, the child adopts orphans, so killing its direct children round
    after round reaches everything: each child killed hands its own children to us.
    That also wins against a process that forks and exits in a loop (a new pid every
    few ms), which a scan of the whole process table never catches. Our own children's
    pids cannot be reused before we reap them, so signalling them is always safe.
    Bounded by `seconds`; without /proc, psutil walks the tree once.
    """
    deadline = time.monotonic() + seconds
    while pids := child_pids():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reap_orphans()
        if time.monotonic() >= deadline:
            return
    if child_pids() is None:
        doomed = psutil.Process().children(recursive=True)
        for process in doomed:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(doomed, timeout=2)
        reap_orphans()


def build_messages(events: list[dict[str, Any]], workspace: str, *, keep_partial: bool = False) -> list[dict[str, Any]]:
    """The chat messages the model is sent, from the history.

    Valid whatever order the events came in: each assistant message is followed by
    one result per tool call it made, taken from the history or, for a call that was
    cut off, a result saying it was interrupted. A reply cut off by the output limit
    goes back as its text and a note that it was cut off (its tool calls never do).
    Partial (interrupted) model output is not sent back as if the model had said it,
    unless `keep_partial`: then its text goes back the same way as a cut-off reply, so
    that the model's next answer is a reply of its own, not the continuation of a
    prefill. A partial that a retry replaced is never sent.
    """
    results = {e["call_id"]: e for e in events if e["type"] == "tool_result"}
    replaced = retried_partials(events)
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT.format(workspace=workspace)}]
    for index, event in enumerate(events):
        if event["type"] == "user_message":
            messages.append({"role": "user", "content": event["content"]})
        elif event["type"] == "model_message" and event.get("partial"):
            if keep_partial and index not in replaced:
                messages += cut_off_messages(event.get("content") or "", "the run was stopped")
        elif event["type"] == "model_message" and event.get("outcome") == "truncated":
            messages += cut_off_messages(event.get("content") or "", "it reached the output limit")
        elif event["type"] == "model_message":
            if (reply := assistant_message(event)) is None:
                continue  # an empty answer from an older version: no API takes it back
            messages.append(reply)
            for call in event.get("tool_calls") or []:
                result = results.get(call["id"])
                content = result["content"] if result else INTERRUPTED_RESULT
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
    return messages


def retried_partials(events: list[dict[str, Any]]) -> set[int]:
    """Indexes of the partial model messages whose call was tried again (a later attempt replaced them)."""
    replaced: set[int] = set()
    last_partial: int | None = None
    for index, event in enumerate(events):
        if event["type"] == "model_message" and event.get("partial"):
            last_partial = index
        elif event["type"] == "model_call_started":
            if event.get("attempt", 1) > 1 and last_partial is not None:
                replaced.add(last_partial)
            last_partial = None
    return replaced


def cut_off_messages(content: str, why: str) -> list[dict[str, Any]]:
    """A reply that was cut off, as the model's own earlier output followed by a note
    saying so; never a trailing assistant message, which the API would continue as a prefill."""
    note = CUT_OFF_NOTE.format(why=why)
    if not content.strip():
        return [{"role": "user", "content": note.replace("The reply above", "Your last reply")}]
    return [{"role": "assistant", "content": content.rstrip()}, {"role": "user", "content": note}]


def assistant_message(event: dict[str, Any]) -> dict[str, Any] | None:
    """A complete `model_message` event as the chat message that goes back to the model;
    None for an answer with neither text nor tool calls, which no API accepts back.

    Its reasoning items (signed thinking blocks, encrypted reasoning) ride along, tagged with the API
    they came from: that API's wire module sends them back unchanged, every other one leaves them out.
    """
    calls = event.get("tool_calls")
    if not calls and not (event.get("content") or "").strip():
        return None
    message: dict[str, Any] = {"role": "assistant", "content": event.get("content") or None}
    if calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls
        ]
    if event.get("reasoning_items"):
        message["reasoning_items"] = event["reasoning_items"]
        message["reasoning_api"] = event.get("reasoning_api")
    return message


def dangling_calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls of complete model messages that have no result in the history."""
    answered = {e["call_id"] for e in events if e["type"] == "tool_result"}
    return [
        call
        for e in events
        if e["type"] == "model_message" and not e.get("partial")
        for call in e.get("tool_calls") or []
        if call["id"] not in answered
    ]


@dataclass
class Activity:
    """What the run is doing right now, so an interrupt knows what to record."""

    kind: str = "idle"  # "model_call", "tool" or "idle"
    partial: llm.Partial | None = None
    call: dict[str, Any] | None = None
    command: RunningCommand | None = None


@dataclass
class Run:
    conv_dir: Path
    config: llm.CallConfig
    workspace: str
    settings: Settings
    messages: list[dict[str, Any]]
    session: requests.Session = field(default_factory=requests.Session)
    activity: Activity = field(default_factory=Activity)
    model_calls: int = 0
    truncations: int = 0  # replies in a row cut off by the output limit
    price: pricing.Price | None = None
    log: Any = None
    call_started: tuple[int, int, float] | None = None  # (call n, attempt, monotonic start) of the call in flight

    # ------------------------------------------------------------------ the loop

    def loop(self) -> int:
        while True:
            if (code := self.take_messages_or_pause()) is not None:
                return code
            if self.model_calls >= self.settings.max_iterations:
                message = f"reached --max-iterations ({self.settings.max_iterations}) without finishing"
                return self.fail(message, "max_iterations")
            if reason := self.over_budget():
                return self.fail(reason, "budget")
            message = self.call_model()
            if message["outcome"] == "truncated":
                self.truncations += 1
                if self.truncations > MAX_TRUNCATIONS:
                    return self.fail(f"the model's reply was cut off by the output limit {self.truncations} times "
                                     "in a row; raise --max-output-tokens", "max_tokens")
                continue
            self.truncations = 0
            calls = message["tool_calls"]
            if not calls:
                if (code := self.finish(message["content"] or "")) is not None:
                    return code
                continue  # a message came in before the end: the model answers it first
            for index, call in enumerate(calls):
                if (code := self.pause_if_requested(skip=calls[index:])) is not None:
                    return code
                if call["name"] == "finish":
                    if (code := self.finish(_finish_message(call), call=call, skip=calls[index + 1:])) is not None:
                        return code
                    break
                self.run_tool(call)

    def take_messages_or_pause(self) -> int | None:
        with transaction(self.conv_dir) as txn:
            if txn.state.pause_requested:
                return self._pause(txn)
            for event in conversation.take_inbox(txn):
                say(f"\n[message] {event['content']}\n")
                self.messages.append({"role": "user", "content": event["content"]})
        return None

    def pause_if_requested(self, skip: list[dict[str, Any]]) -> int | None:
        with transaction(self.conv_dir) as txn:
            if not txn.state.pause_requested:
                return None
            self._skip(txn, skip)
            return self._pause(txn)

    def _pause(self, txn: Transaction, reason: str = "pause requested", kind: str = "pause") -> int:
        keep_for_resume(txn)
        txn.set_status(Status.PAUSED, reason, kind=kind)
        _ignore_stop_signals()  # the outcome is written; a late signal must not undo it
        say(f"\n[paused] {reason}\n")
        self.log.info("paused", reason=reason)
        return EXIT_PAUSED

    # ------------------------------------------------------------------ steps

    def call_model(self) -> dict[str, Any]:
        self.model_calls += 1
        say(f"\n[model] call {self.model_calls} ({self.config.ref.full_name})\n")
        self.log.info("model_call", n=self.model_calls, messages=len(self.messages))

        def new_partial(attempt: int) -> llm.Partial:
            with transaction(self.conv_dir) as txn:
                txn.record("model_call_started", n=self.model_calls, attempt=attempt, started=time.time())
            self.call_started = (self.model_calls, attempt, time.monotonic())
            self.activity = Activity("model_call", partial=llm.Partial())
            return self.activity.partial  # type: ignore[return-value]

        progress = ReasoningProgress()

        def on_delta(kind: str, text: str) -> None:
            progress.show(kind, text)

        def on_failure(attempt: int, error: llm.LLMError, partial: llm.Partial, wait: float | None) -> None:
            self.activity = Activity()
            progress.end()
            then = f"trying again in {wait:.1f} s" if wait is not None else "giving up"
            say(f"\n[model error] attempt {attempt}: {error}; {then}\n")
            self.log.warning("model_call_failed", attempt=attempt, error=str(error), kind=error.kind, wait_s=wait)
            with transaction(self.conv_dir) as txn:
                if partial.content or partial.reasoning or partial.tool_calls:
                    outcome = "timeout" if error.kind == "timeout" else "failed"
                    txn.record("model_message", **self._model_event(partial, outcome=outcome))
                txn.record("model_attempt_failed", attempt=attempt, error=str(error), kind=error.kind,
                           status=error.status, retry_in_s=None if wait is None else round(wait, 2))

        try:
            partial = llm.complete(self.session, self.config, self.messages, TOOL_SPECS,
                                   on_delta=on_delta, on_failure=on_failure, new_partial=new_partial)
        finally:
            progress.end()
        truncated = partial.finish_reason == "length"
        message = self._model_event(partial, outcome="truncated" if truncated else "complete")
        if truncated:
            # Tool calls of a cut-off reply may be cut too: kept apart, never run, never sent back.
            message["truncated_tool_calls"], message["tool_calls"] = message["tool_calls"], []
            say(f"\n[model] the reply was cut off by the output limit (finish reason {partial.finish_reason})\n")
        with transaction(self.conv_dir) as txn:
            txn.record("model_message", **message)
            # Only now is the answer safe: a signal before this point records it as interrupted, text and all.
            self.activity = Activity()
        if truncated:
            self.messages += cut_off_messages(message["content"], "it reached the output limit")
        elif (reply := assistant_message(message)) is not None:  # always: an empty answer is a failed attempt
            self.messages.append(reply)
        if partial.content and not partial.content.endswith("\n"):
            say("\n")
        return message

    def _model_event(self, partial: llm.Partial, outcome: str) -> dict[str, Any]:
        """The `model_message` event for a call, with its cost. A call cut off before
        the API reported usage was still billed for its prompt: its usage and cost are
        estimated from the text, and marked so."""
        # A call cut off mid-character may hold half a surrogate pair, which no file can store.
        calls = [{"id": c.id, "name": c.name, "arguments": llm.whole_text(c.arguments)} for c in partial.tool_calls]
        usage = dict(partial.usage)
        estimated = outcome != "complete" or not usage
        if estimated:  # what the API reported so far (if anything), topped up from the text
            produced = partial.content + partial.reasoning + "".join(c["arguments"] for c in calls)
            usage["prompt_tokens"] = usage.get("prompt_tokens") or pricing.estimate_messages_tokens(self.messages)
            usage["completion_tokens"] = max(usage.get("completion_tokens") or 0, pricing.estimate_tokens(produced))
            if partial.reasoning:  # the reasoning streamed so far is output the call was billed for
                thought = pricing.estimate_tokens(partial.reasoning)
                usage["reasoning_tokens"] = max(usage.get("reasoning_tokens") or 0, thought)
        items: dict[str, Any] = {}
        if partial.reasoning_items:
            # Only whole, signed items: a thinking block cut off mid-way never goes back to the API.
            items = {"reasoning_items": partial.reasoning_items,
                     "reasoning_api": getattr(llm.wire_for(self.config), "REASONING_API", None)}
        return {
            "content": llm.whole_text(partial.content),
            "reasoning": llm.whole_text(partial.reasoning) or None,
            **items,
            "tool_calls": calls,
            "finish_reason": partial.finish_reason,
            "usage": usage,
            "usage_estimated": estimated,
            "cost": None if self.price is None else round(pricing.cost_of(usage, self.price), 8),
            "cost_estimated": estimated,
            "latency_ms": partial.elapsed_ms(),
            "first_byte_ms": partial.first_byte_ms,
            "model": self.config.ref.full_name,
            "outcome": outcome,
            "partial": outcome != "complete",
        }

    def over_budget(self) -> str | None:
        """Why the next model call must not start, if it would go past --max-cost."""
        limit = self.settings.max_cost
        if limit is None or self.price is None:
            return None
        spent = conversation.load_state(self.conv_dir).metrics.accumulated_cost or 0.0
        if spent >= limit:
            return f"budget: already spent ${spent:.4f} of --max-cost ${limit:g}"
        prompt = pricing.cost_of({"prompt_tokens": pricing.estimate_messages_tokens(self.messages)}, self.price)
        if spent + prompt <= limit:
            return None
        return (f"budget: ${spent:.4f} spent, and the next model call's prompt alone (~${prompt:.4f}) "
                f"would go past --max-cost ${limit:g}")

    def run_tool(self, call: dict[str, Any]) -> None:
        args, problem = _parse_arguments(call)
        if call["name"] != "terminal":
            problem = f"unknown tool {call['name']!r}; the tools are terminal and finish"
        elif not problem and not isinstance(args.get("command"), str):
            problem = "terminal needs a string argument 'command'"
        if problem:
            say(f"[tool error] {problem}\n")
            self._record_result(call, content=f"[error] {problem}", outcome="invalid")
            return
        command = args["command"]
        say(f"[terminal] $ {command}\n")
        self.log.info("tool_start", tool="terminal", call_id=call["id"])
        self.activity = Activity("tool", call=call)  # before the process exists: see on_child_ended
        running = RunningCommand(command, self.workspace, self.settings)
        self.activity.command = running
        result = running.wait(self.settings.tool_timeout)
        reap_orphans(spare=running.process.pid)
        shown = result.output if len(result.output) <= 2000 else result.output[:2000] + "\n[... more ...]"
        if shown and not shown.endswith("\n"):
            shown += "\n"
        say(f"{shown}[terminal] {describe_result(result).splitlines()[0]}\n")
        self._record_result(
            call, content=describe_result(result), outcome="timeout" if result.timed_out else "complete",
            exit_code=result.exit_code, truncated=result.truncated, duration_ms=result.duration_ms,
        )

    def _skip(self, txn: Transaction, calls: list[dict[str, Any]]) -> None:
        for call in calls:
            txn.record("tool_result", call_id=call["id"], name=call["name"], content=SKIPPED_RESULT, outcome="skipped")

    def _record_result(self, call: dict[str, Any], *, content: str, outcome: str, **extra: Any) -> None:
        with transaction(self.conv_dir) as txn:
            txn.record("tool_result", call_id=call["id"], name=call["name"], content=content, outcome=outcome, **extra)
            # Only now is the step safe: a signal before this point records it as interrupted, output and all.
            self.activity = Activity()
        self.messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})

    # ------------------------------------------------------------------ endings

    def finish(self, answer: str, *, call: dict[str, Any] | None = None,
               skip: list[dict[str, Any]] = ()) -> int | None:
        """End the run with `answer`: the `finish` call's result, the calls after it
        (skipped) and the status, in one transaction.

        A message `agent send` queued before that transaction is never left unanswered:
        the run does not finish, and returns None so that the model sees it.
        """
        with transaction(self.conv_dir) as txn:
            if new := conversation.take_inbox(txn):
                if call is not None:
                    txn.record("tool_result", call_id=call["id"], name=call["name"], content=SUPERSEDED_RESULT,
                               outcome="superseded")
                    self.messages.append({"role": "tool", "tool_call_id": call["id"], "content": SUPERSEDED_RESULT})
                self._skip(txn, skip)
                self.messages += [{"role": "tool", "tool_call_id": c["id"], "content": SKIPPED_RESULT} for c in skip]
                for event in new:
                    self.messages.append({"role": "user", "content": event["content"]})
                return None
            if call is not None:
                txn.record("tool_result", call_id=call["id"], name=call["name"], content="[finished]",
                           outcome="complete")
            self._skip(txn, skip)
            txn.set_status(Status.FINISHED, "finished", answer=answer)
            _ignore_stop_signals()
        say(f"\n[finished] {answer}\n")
        self.log.info("finished")
        return EXIT_FINISHED

    def fail(self, message: str, kind: str) -> int:
        # Whatever raised it (a crash's text included), people see one line without the key.
        message = llm.one_line(logs.redact_text(message, [self.config.api_key]))
        with transaction(self.conv_dir) as txn:
            txn.record("error", kind=kind, message=message)
            keep_for_resume(txn)
            if txn.state.status is Status.RUNNING:
                txn.set_status(Status.ERROR, message, kind=kind)
            _ignore_stop_signals()
        say(f"\n[error] {message}\n")
        self.log.error("run_failed", kind=kind, message=message)
        return EXIT_ERROR

    def timed_out(self, error: llm.LLMError) -> int:
        """A model call timed out and is not retried: pause or fail, as --on-timeout says."""
        if self.settings.on_timeout == "pause":
            with transaction(self.conv_dir) as txn:
                return self._pause(txn, reason=str(error), kind="llm_timeout")
        return self.fail(str(error), "llm_timeout")

    def stop_interrupted(self, signal_name: str, *, timed_out: bool = False) -> int:
        """Record what was in flight when the signal came, and pause the conversation
        (or, `timed_out` by the backstop, end it `error` as the watchdog would have)."""
        activity, self.activity = self.activity, Activity()
        if activity.command is not None:
            activity.command.kill()
        end_descendants()  # nothing of the run may outlive the moment it is marked paused
        self.session.close()
        with transaction(self.conv_dir) as txn:
            detail: dict[str, Any] = {"during": activity.kind, "signal": signal_name}
            if activity.partial is not None:
                txn.record("model_message", **self._model_event(activity.partial, outcome="interrupted"))
                detail["partial_chars"] = len(activity.partial.content)
                detail["reasoning_chars"] = len(activity.partial.reasoning)
            if activity.call is not None and activity.command is not None:
                output = activity.command.capture.text()
                txn.record("tool_result", call_id=activity.call["id"], name=activity.call["name"],
                           content=f"{INTERRUPTED_RESULT}\n{output}", outcome="interrupted",
                           truncated=activity.command.capture.truncated)
                detail["tool_call_id"] = activity.call["id"]
            txn.record("interrupted", **detail)
            keep_for_resume(txn)
            if txn.state.status is Status.RUNNING:
                if timed_out:
                    txn.set_status(Status.ERROR, f"the run exceeded --timeout {self.settings.run_timeout:g} s "
                                   "(stopped by its own backstop: its supervisor did not act)", kind="timeout")
                else:
                    txn.set_status(Status.PAUSED, f"interrupted by {signal_name}", kind="interrupt")
        if timed_out:
            say(f"\n[error] the run exceeded --timeout {self.settings.run_timeout:g} s; stopped by its own backstop\n")
            return EXIT_TIMEOUT
        say(f"\n[interrupted] by {signal_name} during {activity.kind}; conversation paused\n")
        self.log.info("interrupted", signal=signal_name, during=activity.kind)
        return EXIT_PAUSED


def keep_for_resume(txn: Transaction) -> None:
    """A run that stops without finishing keeps the messages sent meanwhile in its
    history, where the next resume sends them to the model; it says so."""
    for event in conversation.take_inbox(txn):
        say(f"\n[message] kept for the next resume: {event['content']}\n")


def _finish_message(call: dict[str, Any]) -> str:
    """The final answer in a `finish` call; its raw arguments if they are not as asked."""
    args, problem = _parse_arguments(call)
    answer = None if problem else args.get("message")
    return answer if isinstance(answer, str) else call["arguments"]


def _parse_arguments(call: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    try:
        args = json.loads(call["arguments"] or "{}")
    except ValueError as e:
        return {}, f"arguments of {call['name']} are not valid JSON ({e})"
    except RecursionError:
        return {}, f"arguments of {call['name']} are nested too deeply to read"
    if not isinstance(args, dict):
        return {}, f"arguments of {call['name']} must be a JSON object"
    return args, None


def _ignore_stop_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def start_backstop(run: Run) -> None:
    """Enforce --timeout and --llm-timeout from inside too, `BACKSTOP_DELAY` after the
    supervisor would have: its SIGUSR1 for a call that is still waiting, and SIGALRM
    (`RunTimedOut`) for the run. Signals go to the main thread only, so the writes that
    hold them off stay whole."""
    settings = run.settings
    if settings.run_timeout is None and settings.llm_timeout is None:
        return
    started = time.monotonic()
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def watch() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        nudged: tuple[int, int] | None = None
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            if settings.run_timeout is not None and now - started > settings.run_timeout + BACKSTOP_DELAY:
                signal.pthread_kill(main_thread, signal.SIGALRM)
                return
            call = run.call_started
            if (settings.llm_timeout is not None and call is not None and run.activity.kind == "model_call"
                    and now - call[2] > settings.llm_timeout + BACKSTOP_DELAY and nudged != call[:2]):
                nudged = call[:2]
                signal.pthread_kill(main_thread, signal.SIGUSR1)

    signal.signal(signal.SIGALRM, _raise_timed_out)
    threading.Thread(target=watch, name="backstop", daemon=True).start()


def die_with_supervisor() -> None:
    """Get SIGINT if the supervising process dies, so a run never goes on unwatched:
    it pauses itself as if interrupted."""
    supervisor_pid = int(os.environ.get(SUPERVISOR_ENV) or 0)
    if not supervisor_pid or not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
    if os.getppid() != supervisor_pid:  # it died before we asked
        os.kill(os.getpid(), signal.SIGINT)


def start(conv_dir: Path, *, keep_partial: bool, key: str | None, log: Any) -> Run | int:
    """Take the conversation over: mark it running and record who we are, take in
    waiting messages, answer tool calls left dangling, and build the `Run`.

    All in one transaction, so SIGINT waits until there is a `Run` to stop. Only a
    conversation `starting` with our token (our marker) is taken: if a stop came first
    it is paused and we never call the model. An exit code if it cannot be started.
    """
    with transaction(conv_dir) as txn:
        state = txn.state
        ours = (state.start or {}).get("token") == os.environ.get(MARKER_ENV)
        if state.status is not Status.STARTING or not ours:
            if ours and state.status is Status.PAUSED:
                say(f"[paused] {state.status_reason}; the run did not call the model\n")
                return EXIT_PAUSED
            say(f"[error] conversation {state.id} is {state.status.value} and not being started for this "
                "process; it cannot be started\n")
            return EXIT_USAGE
        history, _ = conversation.read_events(conv_dir)  # what is committed; this transaction adds the rest
        # A child ran it before (a run submitted anew has a fresh runtime, so ask the history).
        resumed = any(e["type"] == "started" for e in history)
        txn.set_status(Status.RUNNING, "resumed" if resumed else "started")
        me = psutil.Process()
        txn.record("started", pid=me.pid, create_time=me.create_time(), start_ticks=process_start_ticks(me.pid),
                   marker=os.environ.get(MARKER_ENV), supervisor_pid=int(os.environ.get(SUPERVISOR_ENV) or 0) or None,
                   host=host_identity())
        conversation.take_inbox(txn)
        for call in dangling_calls(history + txn.recorded):
            txn.record("tool_result", call_id=call["id"], name=call["name"], content=INTERRUPTED_RESULT,
                       outcome="interrupted")
        ref = parse_model(state.model)
        settings = state.settings
        api, request_reasoning = _reasoning_for(ref, settings)
        log.info("run_started", pid=me.pid, resumed=resumed, model=state.model, api=api,
                 reasoning_effort=settings.reasoning_effort)
        return Run(
            conv_dir=conv_dir,
            config=llm.CallConfig(ref=ref, base_url=state.base_url or ref.provider.default_base_url or "",
                                  api_key=key, stream=settings.stream,
                                  idle_timeout=settings.idle_timeout, retry_timeouts=settings.on_timeout == "retry",
                                  max_output_tokens=settings.max_output_tokens, api=api,
                                  reasoning=request_reasoning),
            workspace=state.workspace,
            settings=settings,
            messages=build_messages(history + txn.recorded, state.workspace, keep_partial=keep_partial),
            log=log,
        )


def _reasoning_for(ref: Any, settings: Settings) -> tuple[str | None, reasoning.RequestReasoning]:
    """The API a run uses and the reasoning part of its requests (checked by the parent before start)."""
    try:
        found = pricing.find_model(ref.full_name)
    except pricing.PricingError:  # reported when the price is looked up; the table's knowledge is lost with it
        found = None
    info = found.info if found is not None else None
    api = reasoning.choose_api(ref, info, settings.api)
    return api, reasoning.request_reasoning(ref, info, api=api, effort=settings.reasoning_effort,
                                            budget=settings.thinking_budget)


class ReasoningProgress:
    """Shows a call's reasoning as it streams, set apart from the answer: between a `[reasoning]` line
    and an `[answer]` line (or `[end of reasoning]` when no text follows it)."""

    def __init__(self) -> None:
        self.kind = "text"
        self.line_open = False  # whether the last text shown did not end its line

    def show(self, kind: str, text: str) -> None:
        if kind != self.kind:
            self._mark("[reasoning]" if kind == "reasoning" else "[answer]")
            self.kind = kind
        say(text)
        self.line_open = not text.endswith("\n")

    def end(self) -> None:
        """The call is over (answered, cut off or failed)."""
        if self.kind == "reasoning":
            self._mark("[end of reasoning]")
            self.kind = "text"

    def _mark(self, label: str) -> None:
        say(("\n" if self.line_open else "") + label + "\n")
        self.line_open = False


def main(conv_id: str, *, keep_partial: bool = False, key: str | None = None) -> int:
    """Run the conversation `conv_id` until it finishes, fails, pauses or is interrupted,
    calling the model with the API key `key` (handed over by the supervisor)."""
    # SIGINT may be ignored on entry (nohup, cron, `&` in a script), or blocked (engines
    # such as Ray start processes so); we always honour it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until a model call is there to time out
    become_subreaper()

    conv_dir = conversation.resolve(conv_id)
    state = conversation.load_state(conv_dir)
    output_times.start(conv_dir, conversation.OUTPUT_FILE)
    logs.configure(conv_dir / conversation.LOG_FILE, [key])
    log = structlog.get_logger().bind(conversation=state.id)

    run: Run | None = None
    try:
        started = start(conv_dir, keep_partial=keep_partial, key=key, log=log)
        if isinstance(started, int):
            return started
        run = started
        install_handlers(run)
        start_backstop(run)
        die_with_supervisor()
        try:
            run.price = pricing.find_price(state.model)
        except pricing.PricingError as error:  # checked before start too; a file may have changed since
            log.warning("price_unknown", error=str(error))
            say(f"[warning] {error}; cost unknown\n")
        code = run.loop()
    except KeyboardInterrupt:
        code = _after_signal(run, "SIGINT")
    except Terminated:
        code = _after_signal(run, "SIGTERM")
    except RunTimedOut:
        code = _after_signal(run, "SIGALRM", timed_out=True)
    except llm.LLMError as error:
        _ignore_stop_signals()
        assert run is not None
        if error.kind == "timeout":
            code = run.timed_out(error)
        else:
            code = run.fail(str(error), "empty_answer" if error.kind == "empty" else "llm")
    except llm.CallTimeout:  # the watchdog's signal landed just outside the HTTP request
        _ignore_stop_signals()
        assert run is not None
        code = run.timed_out(llm.LLMError("the model call ran past --llm-timeout", retryable=False, kind="timeout"))
    except Exception as error:  # a bug must still leave the conversation consistent
        _ignore_stop_signals()
        log.exception("crashed")
        if run is None:
            raise
        code = run.fail(f"internal error: {type(error).__name__}: {error}", "crash")
    _ignore_stop_signals()
    end_descendants()
    with transaction(conv_dir) as txn:
        txn.record("exited", exit_code=code)
    return code


def _after_signal(run: Run | None, signal_name: str, *, timed_out: bool = False) -> int:
    _ignore_stop_signals()
    if run is None:  # stopped before the conversation was taken over: nothing to record
        return EXIT_PAUSED
    return run.stop_interrupted(signal_name, timed_out=timed_out)


def install_handlers(run: Run) -> None:
    """SIGUSR1 (the watchdog) and SIGCHLD (orphans to reap) need to know what the run is doing."""

    def on_watchdog(signum: int, frame: Any) -> None:
        partial = run.activity.partial
        # Only a call still waiting for its answer is abandoned; a late signal is moot.
        if run.activity.kind == "model_call" and partial is not None and partial.finish_reason is None:
            raise llm.CallTimeout()

    def on_child_ended(signum: int, frame: Any) -> None:
        if run.activity.kind == "tool":
            if run.activity.command is None:
                return  # the tool's process is being started; its pid is not known yet
            reap_orphans(spare=run.activity.command.process.pid)
        else:
            reap_orphans()

    signal.signal(signal.SIGUSR1, on_watchdog)
    signal.signal(signal.SIGCHLD, on_child_ended)  # reap adopted orphans at once, even mid-call
