"""What the commands do to runs: start a child, stop it, pause it, wait for it, and
reconcile a conversation whose process vanished.

Every function here works from the conversation's directory alone, so any shell can
act on any run. Status changes go through `agent_proc.conversation.transaction`, and
so through the one state machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from agent_proc.environment import MARKER_ENV, SUPERVISOR_ENV, process_start_ticks, same_host
from agent_proc.providers import find_api_key, parse_model
from agent_proc.status import ACTIVE, STARTABLE, Status
from supervisor import backends, processes, scheduled

STOP_LOCK_FILE = "stop.lock"
START_TIMEOUT = 30.0
TERM_WAIT = 0.5  # how long SIGTERM gets before SIGKILL, once SIGINT's grace has run out
SWEEP_TIME = 3.0  # how long a stop keeps killing what is left of a run (a process that forks in a loop)


class StartFailed(Exception):
    """The child exited before it took the conversation over."""


class StoppedBeforeStart(Exception):
    """`agent interrupt` or `agent pause` came while the run was starting: it is paused."""

    def __init__(self, state: State) -> None:
        super().__init__(f"run {state.id} was stopped before it started; it is paused")
        self.state = state


class AlreadyActive(ConversationError):
    """A start asked for a conversation that is already starting or running."""


# --------------------------------------------------------------------------- starting


def mark_starting(conv_dir: Path, command: str = "agent run") -> str:
    """Record, under the lock, that this process is about to start a child for the
    conversation; return the start token that child must carry (as its marker).

    From now on `agent interrupt` and `agent pause` can stop the run, and `ps` lists it.
    """
    with transaction(conv_dir) as txn:
        state = txn.state
        if state.status in ACTIVE:
            raise AlreadyActive(f"conversation {state.id} is already {state.status.value}")
        if state.status not in STARTABLE:
            raise AlreadyActive(f"conversation {state.id} is {state.status.value} and cannot be started")
        token = f"{state.id}-{os.urandom(8).hex()}"
        me = os.getpid()
        txn.set_status(Status.STARTING, "starting", token=token,
                       starter={"pid": me, "start_ticks": process_start_ticks(me), "command": command})
        return token


def start_failed(conv_dir: Path, token: str, reason: str) -> State:
    """A start that never reached its child's take-over ends `error` (if it is still ours)."""
    with transaction(conv_dir) as txn:
        if txn.state.status is Status.STARTING and (txn.state.start or {}).get("token") == token:
            txn.set_status(Status.ERROR, reason, kind="start")
        return txn.state


def _stop_starting(txn: conversation.Transaction, requested_by: str) -> bool:
    """In a transaction: a conversation still `starting` is paused at once; the child
    that comes later finds it paused and does not run. Returns whether it was."""
    if txn.state.status is not Status.STARTING:
        return False
    txn.set_status(Status.PAUSED, f"stopped by {requested_by} before it started", kind="interrupt")
    txn.record("stopped", requested_by=requested_by, pid=os.getpid(), signals=[], method="before_start",
               duration_ms=0.0, exit_ms=0.0, killed_descendants=0, survivors=[], escaped=[])
    return True


def _open_output(conv_dir: Path) -> int:
    return conversation.open_fd(conv_dir / conversation.OUTPUT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT)


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


def spawn_child(conv_dir: Path, *, supervisor_pid: int | None, token: str, keep_partial: bool = False,
                key: str | None = None) -> subprocess.Popen[bytes]:
    """Start the run's child, `python -m agent_proc run ID`, in the workspace, carrying
    the start token (see `mark_starting`) as its marker, which no other process has,
    and the API key (`key`, else the one chosen from our environment) on a pipe."""
    state = load_state(conv_dir)
    env = {k: v for k, v in os.environ.items() if k != SUPERVISOR_ENV}
    env["AGENT_HOME"] = str(conv_dir.parent.parent)
    env[MARKER_ENV] = marker = token
    if supervisor_pid:
        env[SUPERVISOR_ENV] = str(supervisor_pid)
    # The marker is on the command line too: the child is not dumpable, so only root
    # can read its environment (see processes.identify).
    argv = ["-m", "agent_proc", "run", state.id, f"--marker={marker}", *(["--keep-partial"] if keep_partial else [])]
    return _spawn(conv_dir, argv, env, cwd=state.workspace, key=key or find_api_key(parse_model(state.model).provider))


def spawn_watcher(conv_dir: Path, *, grace: float, token: str, keep_partial: bool = False) -> subprocess.Popen[bytes]:
    """Start the process that supervises a detached run (`python -m supervisor.watcher`):
    it starts the child, enforces the run's limits and records how it ended. It gets
    the API key on a pipe, to hand it on to the child the same way."""
    argv = ["-m", "supervisor.watcher", conv_dir.name, "--grace", str(grace), "--token", token,
            *(["--keep-partial"] if keep_partial else [])]
    key = find_api_key(parse_model(load_state(conv_dir).model).provider)
    return _spawn(conv_dir, argv, {**os.environ, "AGENT_HOME": str(conv_dir.parent.parent)}, key=key)


def wait_started(conv_dir: Path, process: subprocess.Popen[bytes], token: str,
                 timeout: float = START_TIMEOUT) -> State:
    """Wait until the child carrying `token` has taken the conversation over (started
    by `process` itself, or by the watcher `process`).

    Raises `StoppedBeforeStart` if a stop came first, `StartFailed` if `process` exited
    before any take-over (the conversation then ends `error`).
    """
    deadline = time.monotonic() + timeout
    while True:
        exited = process.poll() is not None
        state = load_state(conv_dir)
        if state.runtime.marker == token:
            return state
        if (state.start or {}).get("token") == token and state.status is Status.PAUSED:
            raise StoppedBeforeStart(state)
        if exited:
            reason = f"the run's process exited ({process.returncode}) before starting: {_last_line(conv_dir)}"
            start_failed(conv_dir, token, reason)
            raise StartFailed(reason)
        if time.monotonic() > deadline:
            process.kill()
            reason = f"the run's process did not start within {timeout:.0f} s"
            start_failed(conv_dir, token, reason)
            raise StartFailed(reason)
        time.sleep(0.01)


def launch(conv_dir: Path, backend_name: str, request: backends.StartRequest) -> State:
    """Start the run's watcher through a backend: here (`local`: returns once the child
    has taken the conversation over) or as a scheduler's job (returns once it is
    submitted and the conversation `queued`)."""
    backend = backends.get(backend_name)
    started = backend.start(conv_dir, request)
    if started.job is not None:
        return scheduled.record_submission(conv_dir, backend, started.job)
    assert started.process is not None and started.token is not None
    return wait_started(conv_dir, started.process, started.token)


def abandon_start(conv_dir: Path, child: subprocess.Popen[bytes], grace: float = 1.0) -> None:
    """Stop a run that was asked to stop (Ctrl+C) before `wait_started` returned: a
    `starting` conversation is paused at once; a child that has taken it over is
    stopped like `agent interrupt` does."""
    stop_run(conv_dir, grace=grace, requested_by="agent run (SIGINT)")
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    reconcile(conv_dir)


def _last_line(conv_dir: Path) -> str:
    try:
        text = conversation.read_file(conv_dir / conversation.OUTPUT_FILE).decode(errors="replace")
    except (OSError, ConversationError):
        return "no output"
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no output"


# --------------------------------------------------------------------------- reconciling


@contextlib.contextmanager
def _stop_lock(conv_dir: Path, *, wait: bool = True, give_up: Callable[[], bool] | None = None) -> Iterator[bool]:
    """Held while a stop is under way, so that two stops make one, and so that nobody
    reconciles a run whose process a stop has just killed but not yet recorded. Waited
    for a bounded time, like the conversation's lock."""
    fd = conversation.open_fd(conv_dir / STOP_LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        if wait:
            conversation.wait_for_lock(fd, f"the stop of {conv_dir.name}", give_up=give_up,
                                       timeout=conversation.LOCK_WAIT + SWEEP_TIME + 5.0)
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
    """The conversation's state, corrected if it says a run is under way (`queued`,
    `starting`, `running`) that is known to be gone: its process, the process starting
    it, or its scheduler's job. An unknown liveness (a run on another host, a scheduler
    that cannot be asked) changes nothing.

    While a stop is under way (another shell's `agent interrupt`), its record is about
    to be written: with `wait_for_stop` we wait for it, otherwise we leave it be.
    """
    state = load_state(conv_dir)
    if state.status not in ACTIVE:
        return Seen(state, None)
    probe = _probe(state)
    if probe.liveness is not backends.Liveness.GONE:
        return Seen(state, probe)
    with _stop_lock(conv_dir, wait=wait_for_stop) as free:
        if free:
            state = _record_vanished(conv_dir, state, probe)
    return Seen(state, probe)


def reconcile(conv_dir: Path, *, wait_for_stop: bool = False) -> State:
    """`inspect`, for callers that only want the state."""
    return inspect(conv_dir, wait_for_stop=wait_for_stop).state


def reconcile_locked(conv_dir: Path) -> State:
    """`reconcile` for a caller that holds the stop lock."""
    state = load_state(conv_dir)
    return _record_vanished(conv_dir, state, _probe(state)) if state.status in ACTIVE else state


def observe_seen(conv_dir: Path) -> Seen:
    """`inspect` as readers (`ps`, `show`, `wait`) show it: if the correction cannot be
    written (a full or read-only disk), it is shown, marked as not recorded, instead of
    failing. A local run whose supervisor is stopped or gone says so."""
    try:
        # A stop that is recording a run whose process is gone is waited for (bounded):
        # a reader never shows `running` for a process that no longer exists.
        seen = inspect(conv_dir, wait_for_stop=True)
    except OSError as error:
        state = load_state(conv_dir)
        probe = _probe(state) if state.status in ACTIVE else None
        if probe is None or probe.liveness is not backends.Liveness.GONE:
            raise
        shown = dataclasses.replace(state, status=Status.ERROR, status_kind="unrecorded")
        shown.status_reason = f"[not recorded: {error.strerror or error}] {probe.detail}"
        return Seen(shown, probe)
    state = seen.state
    if state.status is Status.RUNNING and (problem := supervisor_problem(state)):
        state = dataclasses.replace(state, status_reason=f"{problem}; {state.status_reason or ''}".rstrip("; "))
    return Seen(state, seen.probe)


def observe(conv_dir: Path) -> State:
    """`observe_seen`, for callers that only want the state."""
    return observe_seen(conv_dir).state


def supervisor_problem(state: State) -> str | None:
    """Why the run's limits may not be enforced from outside: its supervising process
    is gone or stopped (the child's own backstop still holds them). Only a command on
    the run's host can tell."""
    runtime = state.runtime
    if not runtime.supervisor_pid or not same_host(runtime.host):
        return None
    child = processes.identify(runtime)
    try:
        if child is None or child.ppid() != runtime.supervisor_pid:
            return f"its supervisor (pid {runtime.supervisor_pid}) is gone"
        if psutil.Process(runtime.supervisor_pid).status() == psutil.STATUS_STOPPED:
            return f"its supervisor (pid {runtime.supervisor_pid}) is stopped"
    except psutil.Error:
        return f"its supervisor (pid {runtime.supervisor_pid}) is gone"
    return None


def _probe(state: State, *, ask_scheduler: bool = False) -> backends.Probe:
    """Whether the run the state says is under way still is. A `starting` run is alive
    while the process starting it is (a scheduler's job, if that is on another host)."""
    if state.status is Status.STARTING:
        starter = (state.start or {}).get("starter") or {}
        if starter.get("host") and not same_host(starter["host"]):
            if state.runtime.awaiting_process:
                return _probe_runtime(state.runtime, ask_scheduler=ask_scheduler)
            where = starter["host"].get("hostname")
            return backends.Probe(backends.Liveness.UNKNOWN, f"it is being started on {where}")
        if processes.is_alive(starter.get("pid"), starter.get("start_ticks")):
            return backends.Probe(backends.Liveness.ALIVE, f"being started by pid {starter.get('pid')}")
        return backends.Probe(backends.Liveness.GONE, f"the process starting it (pid {starter.get('pid')}, "
                                                      f"{starter.get('command')}) is gone")
    return _probe_runtime(state.runtime, ask_scheduler=ask_scheduler)


def _probe_runtime(runtime: Runtime, *, ask_scheduler: bool = False) -> backends.Probe:
    try:
        return backends.of(runtime).probe(runtime, ask_scheduler=ask_scheduler)
    except backends.BackendError as error:
        return backends.Probe(backends.Liveness.UNKNOWN, str(error))


def _same_start(a: State, b: State) -> bool:
    ra, rb = a.runtime, b.runtime
    return ((a.status, (a.start or {}).get("token"), ra.pid, ra.start_ticks, (ra.job or {}).get("id"))
            == (b.status, (b.start or {}).get("token"), rb.pid, rb.start_ticks, (rb.job or {}).get("id")))


def _record_vanished(conv_dir: Path, seen: State, probe: backends.Probe) -> State:
    """Under the stop lock: mark a run that `probe` found gone as failed (or, for a job
    cancelled before it started, paused), and end whatever it left behind here
    (tools of a child that crashed run on under init)."""
    with transaction(conv_dir) as txn:
        state = txn.state
        runtime = state.runtime
        if state.status in ACTIVE and probe.liveness is backends.Liveness.GONE and _same_start(state, seen):
            starting = state.status is Status.STARTING
            marker = (state.start or {}).get("token") if starting else runtime.marker
            here = same_host(((state.start or {}).get("starter") or {}).get("host") if starting else runtime.host)
            orphans = processes.marked(marker) if here else []
            processes.send(orphans, signal.SIGKILL)
            txn.record("reconciled", reason=probe.detail, pid=None if starting else runtime.pid,
                       killed=[_describe(p) for p in orphans])
            if not starting and runtime.ended_at is None:
                txn.record("exited", exit_code=None)
            if state.status is Status.QUEUED and probe.cancelled:
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
    before_start: bool = False  # it was `starting`, and is paused before its child ran

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.conversation, "status": self.status.value, "already_stopped": self.already_stopped,
            "before_start": self.before_start,
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
    with contextlib.nullcontext() if for_a_scheduler else _stop_lock(conv_dir, give_up=hurry):
        with transaction(conv_dir, give_up=hurry) as txn:
            if _stop_starting(txn, requested_by):
                return StopReport(txn.state.id, txn.state.status, already_stopped=False, method="before_start",
                                  before_start=True)
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
        # left of the snapshot, and anything carrying the run's marker that got out of it,
        # again and again until none is left (a process that forks and exits in a loop).
        sweep = processes.sweep(tree, state.runtime.marker, SWEEP_TIME)
        leftovers, escaped, survivors = sweep.killed_in_tree, sweep.escaped, sweep.survivors
        killed = len([p for p in leftovers if p is not process]) + len(escaped)
        escaped_info = [_describe(p) for p in escaped[:20]] + ([f"... {len(escaped) - 20} more"] * (len(escaped) > 20))
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        method = {1: "sigint", 2: "sigterm", 3: "sigkill"}[len(signals)]

        with transaction(conv_dir, give_up=hurry) as txn:
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
        probe = _probe_runtime(runtime, ask_scheduler=True)
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


def request_pause(conv_dir: Path) -> tuple[State, bool]:
    """Ask a running child to pause after its current model call or tool; a run still
    `starting` is paused at once. Returns the state, and whether it was starting."""
    state = reconcile(conv_dir)
    if state.status not in ACTIVE:
        return state, False
    with transaction(conv_dir) as txn:
        if _stop_starting(txn, "agent pause"):
            return txn.state, True
        if txn.state.status is Status.RUNNING and not txn.state.pause_requested:
            txn.record("pause_requested", pid=os.getpid())
        return txn.state, False


def wait_settled(conv_dir: Path, timeout: float | None = None, poll: float = 0.05) -> State:
    """Wait until no run is under way (or `timeout`); return the conversation's state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = observe(conv_dir)
        if state.status not in ACTIVE:
            return state
        if deadline is not None and time.monotonic() >= deadline:
            return state
        time.sleep(poll)
