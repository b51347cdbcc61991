"""Limits enforced from outside the child, by whichever process supervises it.

A child wedged in C code, or one that ignores signals, cannot be trusted to time
itself out, so the supervisor (the foreground `agent run`, or the watcher process
of a detached run) checks the limits:

- `--llm-timeout S`: the child records when each model call starts
  (`state.current_call`). Past the limit, the child gets SIGUSR1, which abandons the
  call like SIGINT does but counts as a timeout (retried, failed or paused, as
  `--on-timeout` says). If the child has not let go of the call after `grace`
  seconds, its whole tree is killed and the run ends `error` (or `paused` with
  `--on-timeout pause`).
- `--timeout S`: the whole run (one start of the child) is stopped like `agent
  interrupt` would, and ends `error` with kind `timeout` (exit code 124).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent_proc.conversation import Settings, load_state, transaction
from agent_proc.status import Status
from supervisor import control


@dataclass
class Watchdog:
    conv_dir: Path
    child: subprocess.Popen[bytes]
    grace: float
    settings: Settings
    time_up: Callable[[], bool] = lambda: False  # a scheduler warned that the job's time limit is near
    started: float = field(default_factory=time.monotonic)
    nudged: tuple[tuple[int, int], float] | None = None  # (call n, attempt) sent SIGUSR1, and when

    @classmethod
    def for_run(cls, conv_dir: Path, child: subprocess.Popen[bytes], grace: float,
                time_up: Callable[[], bool] = lambda: False) -> Watchdog:
        return cls(conv_dir, child, grace, load_state(conv_dir).settings, time_up)

    @property
    def idle(self) -> bool:
        return self.settings.llm_timeout is None and self.settings.run_timeout is None and not self.time_up()

    def check(self, meanwhile: Callable[[], bool] = lambda: False) -> control.StopReport | None:
        """Act on any limit that has passed; return the report if the run was stopped.
        `meanwhile` is polled while a stop waits (see `control.stop_run`'s `hurry`)."""
        if self.idle or self.child.poll() is not None:
            return None
        run_timeout = self.settings.run_timeout
        over = run_timeout is not None and time.monotonic() - self.started > run_timeout
        if over or self.time_up():
            reason = (f"the run exceeded --timeout {run_timeout:g} s" if over
                      else "the job reached the scheduler's warning before its time limit")
            report = control.stop_run(self.conv_dir, grace=self.grace, requested_by="--timeout", hurry=meanwhile)
            end_stopped_run(self.conv_dir, Status.ERROR, reason, "timeout")
            return report
        call = load_state(self.conv_dir).current_call
        llm_timeout = self.settings.llm_timeout
        if llm_timeout is None or call is None or time.time() - call["started"] <= llm_timeout:
            return None
        key = (call["n"], call["attempt"])
        if self.nudged is None or self.nudged[0] != key:
            self.child.send_signal(signal.SIGUSR1)  # our own child: its pid cannot have been reused
            self.nudged = (key, time.monotonic())
            return None
        if time.monotonic() - self.nudged[1] < self.grace:
            return None
        # The child did not let go of the call: it is wedged. End it from outside.
        report = control.stop_run(self.conv_dir, grace=0, requested_by="--llm-timeout watchdog", hurry=meanwhile)
        target = Status.PAUSED if self.settings.on_timeout == "pause" else Status.ERROR
        reason = f"a model call ran past --llm-timeout {llm_timeout:g} s and the process had to be killed"
        end_stopped_run(self.conv_dir, target, reason, "llm_timeout")
        return report


def end_stopped_run(conv_dir: Path, target: Status, reason: str, kind: str) -> None:
    """Give a run that a stop left `paused` its real outcome and cause."""
    with transaction(conv_dir) as txn:
        if txn.state.status is not Status.PAUSED:
            return  # it finished or failed on its own meanwhile
        if target is Status.PAUSED:
            txn.record("status_explained", reason=reason, kind=kind)
        else:
            txn.set_status(target, reason, kind=kind)
