"""Finding, signalling and ending the processes of a run, without ever touching a stranger.

A pid on disk is only a hint: pids are reused. A recorded process is trusted only
when its create time matches the one the child recorded and its environment carries
the marker the supervisor gave it when it started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

from agent_proc.conversation import Runtime
from agent_proc.environment import MARKER_ENV, process_start_ticks

CREATE_TIME_TOLERANCE = 0.05  # seconds; psutil derives it from clock ticks


def identify(runtime: Runtime) -> psutil.Process | None:
    """The live process `runtime` describes, or None if it is gone or is someone else."""
    if not runtime.pid or runtime.create_time is None:
        return None
    try:
        process = psutil.Process(runtime.pid)
        if runtime.start_ticks is not None:
            # Exact, and immune to the wall clock being stepped (which moves create times).
            if process_start_ticks(runtime.pid) != runtime.start_ticks:
                return None  # the pid was reused
        elif abs(process.create_time() - runtime.create_time) > CREATE_TIME_TOLERANCE:
            return None  # the pid was reused
        if process.status() == psutil.STATUS_ZOMBIE:
            return None  # exited; only waiting for its parent to reap it
        if runtime.marker and not _has_marker(process, runtime.marker):
            return None
        return process
    except psutil.NoSuchProcess:
        return None


def is_alive(pid: int | None, start_ticks: int | None) -> bool:
    """Whether the process `pid` that started at `start_ticks` still runs (not a zombie,
    not a newer process with a reused pid)."""
    if not pid:
        return False
    try:
        if start_ticks is not None and process_start_ticks(pid) != start_ticks:
            return False
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _has_marker(process: psutil.Process, marker: str) -> bool:
    try:
        return process.environ().get(MARKER_ENV) == marker
    except psutil.AccessDenied:
        # The child makes itself non-dumpable, which puts its environment out of reach
        # of anyone but root; it carries the marker on its command line too. Another
        # user's process cannot be ours; and if it were, we could not signal it.
        try:
            return process.uids().real == os.getuid() and f"--marker={marker}" in process.cmdline()
        except psutil.Error:
            return False


def snapshot_tree(root: psutil.Process) -> list[psutil.Process]:
    """`root` and all its descendants, taken before anything is killed: once a parent
    dies its children are reparented and can no longer be found through it."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def marked(marker: str | None) -> list[psutil.Process]:
    """Live processes whose environment carries the run's marker: whatever the run
    started, even what left its process tree (a daemon reparented to init). Only a
    process that wiped its own environment hides from this; cgroups would be needed."""
    if not marker:
        return []
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get(MARKER_ENV) == marker and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def send(processes: Iterable[psutil.Process], sig: int) -> list[psutil.Process]:
    """Send `sig` to each process still alive (psutil re-checks identity first).

    A stopped process is continued too, so that it can act on the signal.
    """
    reached = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.send_signal(sig)
            if sig not in (signal.SIGKILL, signal.SIGCONT):
                process.send_signal(signal.SIGCONT)
            reached.append(process)
    return reached


def alive(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    out = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                out.append(process)
    return out


def wait_gone(
    processes: list[psutil.Process], timeout: float, *, poll: float = 0.005, give_up: Callable[[], bool] | None = None,
) -> list[psutil.Process]:
    """Wait until none of `processes` is alive, `timeout` passes or `give_up()` is true;
    return the survivors.

    Polls instead of `psutil.wait_procs`, which would reap our own children behind
    the back of the `subprocess.Popen` that owns them.
    """
    deadline = time.monotonic() + timeout
    while True:
        survivors = alive(processes)
        if not survivors or time.monotonic() >= deadline or (give_up and give_up()):
            return survivors
        time.sleep(poll)


@dataclass
class Sweep:
    killed_in_tree: list[psutil.Process]  # what was left of the snapshot
    escaped: list[psutil.Process]  # processes of the run found outside it
    survivors: list[int]  # pids still alive when the time ran out


def sweep(tree: list[psutil.Process], marker: str | None, seconds: float) -> Sweep:
    """Kill what is left of `tree` and every process carrying `marker`, round after
    round, until a scan finds none or `seconds` have passed.

    One round is not enough for a process that forks and exits in a loop: by the time
    it is killed, its child has taken its place. Each round stops everything it found
    (SIGSTOP) before it kills, so that what is caught cannot fork any more.
    """
    deadline = time.monotonic() + seconds
    in_tree = alive(tree)
    known = {p.pid for p in tree}
    escaped: list[psutil.Process] = []
    found = in_tree + [p for p in marked(marker) if p.pid not in known]
    while found:
        for process in found:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGSTOP)
        for process in found:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGKILL)
        for process in found:
            if process.pid not in known:
                known.add(process.pid)
                escaped.append(process)
        wait_gone(found, 0.5)
        if time.monotonic() >= deadline:
            break
        found = alive(found) + [p for p in marked(marker) if p.pid not in known]
    survivors = alive(tree + escaped) + [p for p in marked(marker) if p.pid not in known]
    return Sweep(in_tree, escaped, sorted({p.pid for p in survivors}))
