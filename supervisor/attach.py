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

from agent_proc import conversation, output_times
from agent_proc.conversation import State
from agent_proc.status import Status
from supervisor import control, watchdog

POLL = 0.05


def output_size(conv_dir: Path) -> int:
    try:
        return os.path.getsize(conv_dir / conversation.OUTPUT_FILE)
    except FileNotFoundError:
        return 0


def tail_offset(conv_dir: Path, lines: int, block: int = 65536) -> int:
    """The offset in output.log where its last `lines` lines begin (read from the end,
    so a long log costs no more than a short one)."""
    try:
        f = open(conv_dir / conversation.OUTPUT_FILE, "rb")  # noqa: SIM115
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
