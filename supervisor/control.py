"""What the commands do to runs: start a child, stop it, pause it, wait for it, and
reconcile a conversation whose process vanished.

Every function here works from the conversation's directory alone, so any shell can
act on any run. Status changes go through `agent_proc.conversation.transaction`, and
so through the one state machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from agent_proc import api_key, conversation
from agent_proc.conversation import ConversationError, Runtime, State, load_state, transaction
from agent_proc.environment import MARKER_ENV, SUPERVISOR_ENV, same_host
from agent_proc.providers import find_api_key, parse_model
from agent_proc.status import ACTIVE, Status
from supervisor import backends, processes, scheduled

STOP_LOCK_FILE = "stop.lock"
START_TIMEOUT = 30.0
TERM_WAIT = 0.5  # how long SIGTERM gets before SIGKILL, once SIGINT's grace has run out


class StartFailed(Exception):
    """The child exited before it took the conversation over."""


# --------------------------------------------------------------------------- starting


def _open_output(conv_dir: Path) -> int:
    return os.open(conv_dir / conversation.OUTPUT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def _spawn(conv_dir: Path, argv: list[str], env: dict[str, str], cwd: str | None = None,
           key: str | None = None) -> subprocess.Popen[bytes]:
    """Start `python ARGV` in a session of its own, its output going to output.log, and
    the API key `key` on a pipe, never in its environment (see `agent_proc.api_key`).

    Its own session keeps a terminal's Ctrl+C away from it: the supervisor decides
    what Ctrl+C means.
    """
    out = _open_output(conv_dir)
    key_fd = api_key.pipe_with(key)
    try:
        return subprocess.Popen([sys.executable, *argv], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=api_key.child_environment(env, key_fd), start_new_session=True,
                                pass_fds=() if key_fd is None else (key_fd,))
    finally:
        os.close(out)
        if key_fd is not None:
            os.close(key_fd)


def spawn_child(conv_dir: Path, *, supervisor_pid: int | None, keep_partial: bool = False,
                key: str | None = None) -> subprocess.Popen[bytes]:
    """Start the run's child, `python -m agent_proc run ID`, in the workspace, with a
    marker no other process has, and the API key (`key`, else the one chosen from our
    environment) on a pipe."""
    state = load_state(conv_dir)
    env = {k: v for k, v in os.environ.items() if k != SUPERVISOR_ENV}
    env["AGENT_HOME"] = str(conv_dir.parent.parent)
    env[MARKER_ENV] = marker = f"{state.id}-{os.urandom(8).hex()}"
    if supervisor_pid:
        env[SUPERVISOR_ENV] = str(supervisor_pid)
    # The marker is on the command line too: the child is not dumpable, so only root
    # can read its environment (see processes.identify).
    argv = ["-m", "agent_proc", "run", state.id, f"--marker={marker}", *(["--keep-partial"] if keep_partial else [])]
    return _spawn(conv_dir, argv, env, cwd=state.workspace, key=key or find_api_key(parse_model(state.model).provider))


def spawn_watcher(conv_dir: Path, *, grace: float, keep_partial: bool = False) -> subprocess.Popen[bytes]:
    """Start the process that supervises a detached run (`python -m supervisor.watcher`):
    it starts the child, enforces the run's limits and records how it ended. It gets
    the API key on a pipe, to hand it on to the child the same way."""
    argv = ["-m", "supervisor.watcher", conv_dir.name, "--grace", str(grace),
            *(["--keep-partial"] if keep_partial else [])]
    key = find_api_key(parse_model(load_state(conv_dir).model).provider)
    return _spawn(conv_dir, argv, {**os.environ, "AGENT_HOME": str(conv_dir.parent.parent)}, key=key)


def wait_started(conv_dir: Path, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT,
                 *, as_supervisor: bool = False) -> State:
    """Wait until the child has recorded itself as the conversation's process (started
    by `process` itself, or, with `as_supervisor`, by the watcher `process`)."""
    deadline = time.monotonic() + timeout
    while True:
        state = load_state(conv_dir)
        runtime = state.runtime
        if (runtime.supervisor_pid if as_supervisor else runtime.pid) == process.pid:
            return state
        if process.poll() is not None:
            raise StartFailed(f"the run's process exited ({process.returncode}) before starting: "
                              f"{_last_line(conv_dir)}")
        if time.monotonic() > deadline:
            process.kill()
            raise StartFailed(f"the run's process did not start within {timeout:.0f} s")
        time.sleep(0.01)


def launch(conv_dir: Path, backend_name: str, request: backends.StartRequest) -> State:
    """Start the run's watcher through a backend: here (`local`: returns once the child
    has taken the conversation over) or as a scheduler's job (returns once it is
    submitted and the conversation `queued`)."""
    backend = backends.get(backend_name)
    started = backend.start(conv_dir, request)
    if started.job is not None:
        return scheduled.record_submission(conv_dir, backend, started.job)
    assert started.process is not None
    return wait_started(conv_dir, started.process, as_supervisor=True)


def abandon_start(conv_dir: Path, child: subprocess.Popen[bytes], grace: float = 1.0) -> None:
    """Stop a child that was asked to stop before `wait_started` returned: SIGINT first
    (if it has taken the conversation over, it records the pause), SIGKILL if need be."""
    child.send_signal(signal.SIGINT)
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    reconcile(conv_dir)


def _last_line(conv_dir: Path) -> str:
    try:
        lines = (conv_dir / conversation.OUTPUT_FILE).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"


# --------------------------------------------------------------------------- reconciling


@contextlib.contextmanager
def _stop_lock(conv_dir: Path, *, wait: bool = True) -> Iterator[bool]:
    """Held while a stop is under way, so that two stops make one, and so that nobody
    reconciles a run whose process a stop has just killed but not yet recorded."""
    fd = os.open(conv_dir / STOP_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@dataclass
class Seen:
    """A conversation's state, and what its backend says of its run if it is under way."""

    state: State
    probe: backends.Probe | None  # None: no run is under way, nothing to ask


def inspect(conv_dir: Path, *, wait_for_stop: bool = False) -> Seen:
    """The conversation's state, corrected if it says a run is under way (`running`,
    `queued`) that its backend knows to be gone. An unknown liveness (a run on another
    host, a scheduler that cannot be asked) changes nothing.

    While a stop is under way (another shell's `agent interrupt`), its record is about
    to be written: with `wait_for_stop` we wait for it, otherwise we leave it be.
    """
    state = load_state(conv_dir)
    if state.status not in ACTIVE:
        return Seen(state, None)
    probe = _probe(state.runtime)
    if probe.liveness is not backends.Liveness.GONE:
        return Seen(state, probe)
    with _stop_lock(conv_dir, wait=wait_for_stop) as free:
        if free:
            state = _record_vanished(conv_dir, state.runtime, probe)
    return Seen(state, probe)


def reconcile(conv_dir: Path, *, wait_for_stop: bool = False) -> State:
    """`inspect`, for callers that only want the state."""
    return inspect(conv_dir, wait_for_stop=wait_for_stop).state


def reconcile_locked(conv_dir: Path) -> State:
    """`reconcile` for a caller that holds the stop lock."""
    state = load_state(conv_dir)
    return _record_vanished(conv_dir, state.runtime, _probe(state.runtime)) if state.status in ACTIVE else state


def _probe(runtime: Runtime, *, ask_scheduler: bool = False) -> backends.Probe:
    try:
        return backends.of(runtime).probe(runtime, ask_scheduler=ask_scheduler)
    except backends.BackendError as error:
        return backends.Probe(backends.Liveness.UNKNOWN, str(error))


def _same_start(a: Runtime, b: Runtime) -> bool:
    return (a.pid, a.start_ticks, (a.job or {}).get("id")) == (b.pid, b.start_ticks, (b.job or {}).get("id"))


def _record_vanished(conv_dir: Path, seen: Runtime, probe: backends.Probe) -> State:
    """Under the stop lock: mark a run that `probe` found gone as failed (or, for a job
    cancelled before it started, paused), and end whatever it left behind here
    (tools of a child that crashed run on under init)."""
    with transaction(conv_dir) as txn:
        runtime = txn.state.runtime
        if txn.state.status in ACTIVE and probe.liveness is backends.Liveness.GONE and _same_start(runtime, seen):
            orphans = processes.marked(runtime.marker) if same_host(runtime.host) else []
            processes.send(orphans, signal.SIGKILL)
            txn.record("reconciled", reason=probe.detail, pid=runtime.pid, killed=[_describe(p) for p in orphans])
            if runtime.ended_at is None:
                txn.record("exited", exit_code=None)
            if txn.state.status is Status.QUEUED and probe.cancelled:
                txn.set_status(Status.PAUSED, f"{probe.detail}; nothing ran", kind="cancelled")
            else:
                txn.set_status(Status.ERROR, probe.detail)
        return txn.state


# --------------------------------------------------------------------------- stopping


@dataclass
class StopReport:
    conversation: str
    status: Status
    already_stopped: bool
    method: str | None = None  # "sigint" (honoured), "sigterm" or "sigkill" (escalated)
    signals: list[str] = field(default_factory=list)
    duration_ms: float = 0.0  # the whole stop, from the command's start to the record
    exit_ms: float = 0.0  # from the first signal to the process observed gone (before any SIGKILL)
    killed_descendants: int = 0
    survivors: list[int] = field(default_factory=list)  # pids that outlived even SIGKILL
    escaped: list[str] = field(default_factory=list)  # processes of the run found outside its tree

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.conversation, "status": self.status.value, "already_stopped": self.already_stopped,
            "method": self.method, "signals": self.signals, "duration_ms": self.duration_ms,
            "exit_ms": self.exit_ms,
            "killed_descendants": self.killed_descendants, "survivors": self.survivors, "escaped": self.escaped,
        }


def stop_run(
    conv_dir: Path, *, grace: float = 2.0, requested_by: str = "interrupt", hurry: Callable[[], bool] = lambda: False,
) -> StopReport:
    """Stop the run now: SIGINT, then SIGTERM after `grace`, then SIGKILL to its whole tree.

    Returns once no process of the run remains and the conversation is `paused`
    (recorded by the child, or here when the child could not). When `hurry()` turns
    true (a second Ctrl+C), the waiting is cut short and everything is killed at once.
    Safe to call twice, from two shells at once: the second finds the run stopped and
    changes nothing.
    """
    started = time.monotonic()
    runtime = load_state(conv_dir).runtime
    # The watcher in a scheduler's job stops its child for a stop that already holds
    # the lock elsewhere (the command that signalled it through the scheduler, and
    # waits for it): it must not wait for that lock.
    for_a_scheduler = runtime.backend != backends.DEFAULT and not _through_scheduler(runtime)
    with contextlib.nullcontext() if for_a_scheduler else _stop_lock(conv_dir):
        state = load_state(conv_dir)
        if state.status in ACTIVE and _through_scheduler(state.runtime):
            return scheduled.stop(conv_dir, state, grace=grace, requested_by=requested_by, hurry=hurry, started=started)
        if state.status is Status.RUNNING and not same_host(state.runtime.host):
            raise ConversationError(f"run {state.id} is a local run on {(state.runtime.host or {}).get('hostname')}; "
                                    "stop it from there")
        process = processes.identify(state.runtime) if state.status is Status.RUNNING else None
        if process is None:
            state = reconcile_locked(conv_dir)
            return StopReport(state.id, state.status, already_stopped=True)

        tree = processes.snapshot_tree(process)
        signals = ["SIGINT"]
        signalled = time.monotonic()
        processes.send([process], signal.SIGINT)
        if processes.wait_gone([process], grace, poll=0.001, give_up=hurry):
            signals.append("SIGTERM")
            processes.send([process], signal.SIGTERM)
            if processes.wait_gone([process], 0 if hurry() else min(TERM_WAIT, grace), poll=0.001, give_up=hurry):
                signals.append("SIGKILL")
        exit_ms = round((time.monotonic() - signalled) * 1000, 1)
        # Whatever the child did, nothing the run started may outlive the stop: what is
        # left of the snapshot, and anything carrying the run's marker that got out of it.
        leftovers = processes.alive(tree)
        pids = {p.pid for p in tree}
        escaped = [p for p in processes.marked(state.runtime.marker) if p.pid not in pids]
        processes.send(leftovers + escaped, signal.SIGKILL)
        survivors = [p.pid for p in processes.wait_gone(tree + escaped, 2.0)]
        killed = len([p for p in leftovers if p is not process]) + len(escaped)
        escaped_info = [_describe(p) for p in escaped]
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        method = {1: "sigint", 2: "sigterm", 3: "sigkill"}[len(signals)]

        with transaction(conv_dir) as txn:
            if txn.state.status is Status.RUNNING:
                # The child died before it could write its own record.
                during = "model_call" if txn.state.current_call else "unknown"
                txn.record("interrupted", during=during, signal=signals[-1], by=requested_by)
                txn.record("exited", exit_code=None)
                txn.set_status(Status.PAUSED, f"interrupted; the process did not stop by itself and got {signals[-1]}",
                               kind="interrupt")
            txn.record("stopped", requested_by=requested_by, pid=os.getpid(), signals=signals, method=method,
                       duration_ms=duration_ms, exit_ms=exit_ms, killed_descendants=killed, survivors=survivors,
                       escaped=escaped_info)
            status = txn.state.status
        return StopReport(state.id, status, already_stopped=False, method=method, signals=signals,
                          duration_ms=duration_ms, exit_ms=exit_ms, killed_descendants=killed, survivors=survivors,
                          escaped=escaped_info)


def _through_scheduler(runtime: Runtime) -> bool:
    """Whether a stop must go through the run's scheduler: always, except for the run's
    own supervisor (the watcher inside the job), which stops its child itself."""
    if runtime.backend == backends.DEFAULT:
        return False
    return not (runtime.supervisor_pid == os.getpid() and same_host(runtime.host))


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:80]}"
    except psutil.Error:
        return str(process.pid)


def all_gone(runtime: Runtime) -> bool:
    """Whether no process of the run is left: its pid gone, or for a scheduler's job,
    the job ended (or nobody can tell any more)."""
    if runtime.backend != backends.DEFAULT:
        probe = _probe(runtime, ask_scheduler=True)
        return probe.liveness is not backends.Liveness.ALIVE
    return not same_host(runtime.host) or processes.identify(runtime) is None


def wait_supervisor_gone(conv_dir: Path, timeout: float = 3.0) -> None:
    """Wait for the watcher of a stopped detached run to finish its last writes."""
    pid = load_state(conv_dir).runtime.supervisor_pid
    if not pid:
        return
    try:
        watcher = psutil.Process(pid)
        command = watcher.cmdline()
        if "supervisor.watcher" not in command or conv_dir.name not in command:
            return  # not our watcher (any more): the pid was reused
    except psutil.Error:
        return
    processes.wait_gone([watcher], timeout)


# --------------------------------------------------------------------------- pausing and waiting


def request_pause(conv_dir: Path) -> State:
    """Ask a running child to pause after its current model call or tool."""
    state = reconcile(conv_dir)
    if state.status is not Status.RUNNING:
        return state
    with transaction(conv_dir) as txn:
        if txn.state.status is Status.RUNNING and not txn.state.pause_requested:
            txn.record("pause_requested", pid=os.getpid())
        return txn.state


def wait_settled(conv_dir: Path, timeout: float | None = None, poll: float = 0.05) -> State:
    """Wait until no run is under way (or `timeout`); return the conversation's state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = reconcile(conv_dir)
        if state.status not in ACTIVE:
            return state
        if deadline is not None and time.monotonic() >= deadline:
            return state
        time.sleep(poll)
