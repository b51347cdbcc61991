"""Being attached to a run: showing its output as it happens, and what Ctrl+C means.

The child writes its progress to the conversation's output.log; a foreground `agent
run` and `agent logs -f` both show it by following that file, so what one sees live
is what the other replays later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from agent_proc import conversation, output_times
from agent_proc.conversation import State, load_state
from agent_proc.status import ACTIVE
from supervisor import control, watchdog
from supervisor.terminal import Display

POLL = 0.05
CHECK_EVERY = 1.0  # following a scheduler's job: how often the scheduler is asked whether it vanished
JOB_EXIT_WAIT = 10.0  # a run that has recorded its end: how long its job may take to exit


def output_size(conv_dir: Path) -> int:
    try:
        return os.path.getsize(conv_dir / conversation.OUTPUT_FILE)
    except FileNotFoundError:
        return 0


def tail_offset(conv_dir: Path, lines: int, block: int = 65536) -> int:
    """The offset in output.log where its last `lines` lines begin (read from the end,
    so a long log costs no more than a short one)."""
    try:
        f = os.fdopen(conversation.open_fd(conv_dir / conversation.OUTPUT_FILE, os.O_RDONLY), "rb")
    except FileNotFoundError:
        return 0
    with f:
        end = f.seek(0, os.SEEK_END)
        if lines == 0:
            return end
        position, seen = end, 0
        # A last line without its newline yet is a line too.
        wanted = lines + 1 if end and (f.seek(end - 1), f.read(1))[1] == b"\n" else lines
        while position > 0:
            step = min(block, position)
            position -= step
            f.seek(position)
            data = f.read(step)
            for index in range(len(data) - 1, -1, -1):
                if data[index] == 10:
                    seen += 1
                    if seen == wanted:
                        return position + index + 1
        return 0


class Stamped:
    """A stream that writes output.log's bytes with each line's time in front
    (`agent logs --timestamps`); `offset` is where the bytes it is given start."""

    def __init__(self, conv_dir: Path, out: BinaryIO, offset: int) -> None:
        self.times = output_times.LineTimes(conv_dir)
        self.out = out
        self.offset = offset
        self.line_start = True

    def write(self, data: bytes) -> int:
        self.times.refresh()
        pieces, start = [], 0
        while start < len(data):
            if self.line_start:
                pieces.append(f"{self.times.at(self.offset + start) or '-':<24} ".encode())
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline + 1
            pieces.append(data[start:end])
            self.line_start = newline >= 0
            start = end
        self.offset += len(data)
        self.out.write(b"".join(pieces))
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def since_offset(conv_dir: Path, moment: str) -> int | None:
    """Where the output written at or after `moment` (ISO, UTC) begins; None if no
    times were recorded for this output (a run of an older version)."""
    times = output_times.LineTimes(conv_dir)
    times.refresh()
    if not times.offsets:
        return None
    found = times.first_offset_since(moment)
    return output_size(conv_dir) if found is None else found


def copy_output(conv_dir: Path, offset: int, out: Display) -> int:
    """Show output.log's bytes from `offset` on; return the new offset."""
    try:
        data = conversation.read_file(conv_dir / conversation.OUTPUT_FILE, offset)
    except FileNotFoundError:
        return offset
    out.write(data)
    return offset + len(data)


def follow(conv_dir: Path, out: Display, *, offset: int, done: Callable[[], bool]) -> int:
    """Copy output as it is written until `done()`, then copy what is left."""
    while not done():
        offset = copy_output(conv_dir, offset, out)
        time.sleep(POLL)
    return copy_output(conv_dir, offset, out)


@dataclass
class Outcome:
    state: State
    stopped_by: int | None  # the signal that made us stop the run, if one did
    report: control.StopReport | None
    display: Display  # where the run was shown; the caller's status lines go there too


@contextlib.contextmanager
def stop_signals() -> Iterator[list[int]]:
    """Note SIGINT and SIGTERM instead of dying of them; yields the list they land in.

    The handlers only take note (the caller's loop acts within one poll), so no
    exception can land at an awkward moment. The signals are unblocked too (an engine
    that launched us may have blocked them).
    """
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(conv_dir: Path, received: list[int], out: Display, grace: float,
          hurry: Callable[[], bool]) -> control.StopReport:
    """The first SIGINT or SIGTERM stops the run as `agent interrupt` does; a second one
    during that stop kills at once (`hurry` says so, and shows what the run prints meanwhile)."""
    name = signal.Signals(received[0]).name
    out.line(f"[agent] {name}: stopping run {conv_dir.name} (again to kill at once)")
    return control.stop_run(conv_dir, grace=grace, requested_by=f"agent run ({name})", hurry=hurry)


def supervise(conv_dir: Path, child: subprocess.Popen[bytes], *, grace: float, show: bool, offset: int,
              time_up: Callable[[], bool] = lambda: False) -> Outcome:
    """Watch the run until its process exits: show its output (if `show`), enforce its
    limits (`watchdog`; `time_up()` turns true when a scheduler's time limit is near),
    and stop it on Ctrl+C or SIGTERM. What the run prints while it is being stopped is
    shown as it comes.
    """
    out = Display(sys.stderr.buffer if show else None)
    dog = watchdog.Watchdog.for_run(conv_dir, child, grace, time_up)
    report = None
    shown_at = time.monotonic()
    with stop_signals() as received:

        def meanwhile() -> bool:
            """Polled while a stop waits for the run to exit: keep showing its output, and
            say whether to hurry (a second Ctrl+C)."""
            nonlocal offset, shown_at
            if show and time.monotonic() - shown_at >= POLL:
                offset, shown_at = copy_output(conv_dir, offset, out), time.monotonic()
            return len(received) > 1

        while child.poll() is None and report is None:
            offset = copy_output(conv_dir, offset, out)
            if received:
                report = _stop(conv_dir, received, out, grace, meanwhile)
            else:
                report = dog.check(meanwhile)
                time.sleep(POLL)
        child.wait()
        copy_output(conv_dir, offset, out)
        # Another shell may be stopping this run: its record comes first.
        state = control.reconcile(conv_dir, wait_for_stop=True)
    return Outcome(state, received[0] if received else None, report, out)


def follow_job(conv_dir: Path, *, grace: float, show: bool, offset: int) -> Outcome:
    """Follow a run that a scheduler holds, from wherever this command runs: show its
    output (output.log on the shared $AGENT_HOME) and where its job is, turn Ctrl+C or
    SIGTERM into an interrupt through the scheduler, and return once the run has
    ended and its job is gone (so that its last words are shown).

    The run's limits are enforced by its watcher, in the job; the scheduler is asked
    about the job every `CHECK_EVERY` seconds, to notice a job that vanished.
    """
    from supervisor import scheduled

    out = Display(sys.stderr.buffer if show else None)
    report = None
    announced: str | None = None
    checked = time.monotonic()
    with stop_signals() as received:
        while True:
            offset = copy_output(conv_dir, offset, out)
            if received and report is None:
                report = _stop(conv_dir, received, out, grace, lambda: len(received) > 1)
            state = load_state(conv_dir)
            node = (state.runtime.job or {}).get("node")
            if node and node != announced:
                out.line(f"[agent] job {state.runtime.job['id']} started on {node}")  # type: ignore[index]
                announced = node
            if state.status not in ACTIVE:
                break
            if time.monotonic() - checked >= CHECK_EVERY:
                control.reconcile(conv_dir)
                checked = time.monotonic()
            time.sleep(POLL)
        scheduled.wait_job_ended(conv_dir, state.runtime, JOB_EXIT_WAIT, give_up=lambda: len(received) > 1)
        copy_output(conv_dir, offset, out)
        state = control.reconcile(conv_dir, wait_for_stop=True)
    return Outcome(state, received[0] if received else None, report, out)


def attach_to(conv_dir: Path, out: Display, *, grace: float, watch_only: bool) -> Outcome:
    """Follow a run started elsewhere (detached, or in another shell) until its process
    is gone, showing its output from now on; return how it ended.

    Unless `watch_only`, Ctrl+C and SIGTERM here stop the run as `agent interrupt` does
    (a second one kills at once). With `watch_only` they only stop the watching, as a
    KeyboardInterrupt to the caller; the run goes on.
    """
    received: list[int] = []
    reports: list[control.StopReport] = []

    def over() -> bool:
        if received and not reports:
            name = signal.Signals(received[0]).name
            out.line(f"[agent] {name}: stopping run {conv_dir.name} (again to kill at once)")
            reports.append(control.stop_run(conv_dir, grace=grace, requested_by=f"agent attach ({name})",
                                            hurry=lambda: len(received) > 1))
        state = control.observe(conv_dir)
        # Its last words are printed after its final status is written: wait for the process
        # (or the scheduler's job) too.
        return state.status not in ACTIVE and control.all_gone(state.runtime)

    previous = {}
    if not watch_only:
        previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        follow(conv_dir, out, offset=output_size(conv_dir), done=over)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    state = control.reconcile(conv_dir, wait_for_stop=True)
    return Outcome(state, received[0] if received else None, reports[0] if reports else None, out)
