"""Being attached to a run: showing its output as it happens, and what Ctrl+C means.

The child writes its progress to the conversation's output.log; a foreground `agent
run` and `agent logs -f` both show it by following that file, so what one sees live
is what the other replays later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from agent_proc import conversation
from agent_proc.conversation import State
from agent_proc.status import Status
from supervisor import control, watchdog

POLL = 0.05


def output_size(conv_dir: Path) -> int:
    try:
        return os.path.getsize(conv_dir / conversation.OUTPUT_FILE)
    except FileNotFoundError:
        return 0


def copy_output(conv_dir: Path, offset: int, out: BinaryIO) -> int:
    """Write output.log's bytes from `offset` on to `out`; return the new offset."""
    try:
        with open(conv_dir / conversation.OUTPUT_FILE, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    if data:
        out.write(data)
        out.flush()
    return offset + len(data)


def follow(conv_dir: Path, out: BinaryIO, *, offset: int, done: Callable[[], bool]) -> int:
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


def supervise(conv_dir: Path, child: subprocess.Popen[bytes], *, grace: float, show: bool, offset: int) -> Outcome:
    """Watch the run until its process exits: show its output (if `show`), enforce its
    limits (`watchdog`), and stop it on Ctrl+C or SIGTERM.

    The first SIGINT or SIGTERM stops the run exactly as `agent interrupt` does; a
    second one during that stop kills at once. The handlers only note the signal (the
    loop acts on it within one poll), so no exception can land at an awkward moment.
    """
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    out = sys.stderr.buffer if show else open(os.devnull, "wb")  # noqa: SIM115
    dog = watchdog.Watchdog.for_run(conv_dir, child, grace)
    report = None
    try:
        while child.poll() is None and report is None:
            offset = copy_output(conv_dir, offset, out)
            if received:
                name = signal.Signals(received[0]).name
                out.write(f"\n[agent] {name}: stopping run {conv_dir.name} (again to kill at once)\n".encode())
                out.flush()
                report = control.stop_run(conv_dir, grace=grace, requested_by=f"agent run ({name})",
                                          hurry=lambda: len(received) > 1)
            else:
                report = dog.check()
                time.sleep(POLL)
        child.wait()
        copy_output(conv_dir, offset, out)
        # Another shell may be stopping this run: its record comes first.
        state = control.reconcile(conv_dir, wait_for_stop=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not show:
            out.close()
    return Outcome(state, received[0] if received else None, report)


def attach_to(conv_dir: Path, out: BinaryIO, *, grace: float, watch_only: bool) -> Outcome:
    """Follow a run started elsewhere (detached, or in another shell) until its process
    is gone, showing its output from now on; return how it ended.

    Unless `watch_only`, Ctrl+C and SIGTERM here stop the run as `agent interrupt` does
    (a second one kills at once). With `watch_only` they only stop the watching, as a
    KeyboardInterrupt to the caller; the run goes on.
    """
    from supervisor import processes

    received: list[int] = []
    reports: list[control.StopReport] = []

    def over() -> bool:
        if received and not reports:
            name = signal.Signals(received[0]).name
            out.write(f"\n[agent] {name}: stopping run {conv_dir.name} (again to kill at once)\n".encode())
            out.flush()
            reports.append(control.stop_run(conv_dir, grace=grace, requested_by=f"agent attach ({name})",
                                            hurry=lambda: len(received) > 1))
        state = control.reconcile(conv_dir)
        # Its last words are printed after its final status is written: wait for the process too.
        return state.status is not Status.RUNNING and processes.identify(state.runtime) is None

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
    return Outcome(state, received[0] if received else None, reports[0] if reports else None)
