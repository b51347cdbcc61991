"""Exit codes, the same for every command. The README's table is written from this."""

from __future__ import annotations

from agent_proc.conversation import State
from agent_proc.status import Status

EXIT_FINISHED = 0  # the run finished (or the command did what it was asked)
EXIT_FAILED = 1  # the run ended in `error`
EXIT_USAGE = 2  # bad usage or input: unknown id, bad flag, missing key or model, wrong state
EXIT_STILL_RUNNING = 3  # `wait --timeout` / `pause --timeout` ran out while the run was still going
EXIT_BUDGET = 4  # the run stopped before a model call that would have gone past --max-cost
EXIT_ALREADY_RUNNING = 75  # `run --exclusive`: a run with the same name or labels is running (EX_TEMPFAIL)
EXIT_TIMEOUT = 124  # the run went past --timeout and was stopped (as GNU timeout)
EXIT_PAUSED = 130  # the run is paused, by interrupt, Ctrl+C or pause (128 + SIGINT)
EXIT_TERMINATED = 143  # the foreground `agent run` itself got SIGTERM (128 + SIGTERM); the run is paused

EXIT_CODES: list[tuple[int, str]] = [
    (EXIT_FINISHED, "finished: the run ended with a final answer; other commands: success"),
    (EXIT_FAILED, "the run ended in `error` (model API failure, --max-iterations, crash)"),
    (EXIT_USAGE, "bad usage or input: unknown or ambiguous id, bad flag, missing model or key, wrong state"),
    (EXIT_STILL_RUNNING, "`wait`/`pause` gave up after --timeout; the run is still going"),
    (EXIT_BUDGET, "the run stopped before a model call that would have gone past --max-cost (status error)"),
    (EXIT_ALREADY_RUNNING, "`run --exclusive` did not start: a run with the same name or labels is running"),
    (EXIT_TIMEOUT, "the run went past --timeout and was stopped (status error)"),
    (EXIT_PAUSED, "the run is paused: interrupted (agent interrupt, Ctrl+C) or paused on request"),
    (EXIT_TERMINATED, "the foreground `agent run`/`resume` got SIGTERM; the run was stopped and paused"),
]


def exit_code_for(state: State) -> int:
    """The exit code that tells a script how a run ended (or that it has not)."""
    if state.status is Status.ERROR:
        return {"timeout": EXIT_TIMEOUT, "budget": EXIT_BUDGET}.get(state.status_kind or "", EXIT_FAILED)
    return {
        Status.FINISHED: EXIT_FINISHED,
        Status.PAUSED: EXIT_PAUSED,
        Status.STARTING: EXIT_STILL_RUNNING,
        Status.RUNNING: EXIT_STILL_RUNNING,
        Status.QUEUED: EXIT_STILL_RUNNING,
        Status.IDLE: EXIT_STILL_RUNNING,
    }[state.status]
