"""Runs that a cluster scheduler holds (any backend but `local`): recording a
submission, the job's first steps on its node, and stopping a run through the
scheduler.

The scheduler only ever has to reach one process, the run's watcher, which was
`exec`ed as the job's main process: it turns SIGINT into our own stop ladder on the
node. From the command's side the ladder is the same as for a local run, each step
going through the backend: SIGINT to the watcher; after `grace`, SIGTERM (the
watcher then kills its child at once); then SIGKILL to every process of the job.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_proc.conversation import Runtime, State, load_state, transaction
from agent_proc.environment import host_identity, process_start_ticks
from agent_proc.status import ACTIVE, Status
from supervisor import backends
from supervisor.backends import Backend, Liveness

if TYPE_CHECKING:
    from supervisor.control import StopReport

CLAIM_TIMEOUT = 120.0  # how long a job's watcher waits for the submitter to record its job id
TERM_WAIT = 2.0  # after SIGTERM to the watcher, before SIGKILL to the whole job
GONE_WAIT = 60.0  # for the scheduler to end a job it was told to end (a cluster's KillWait is often 30 s)
POLL = 0.005  # the conversation's files: cheap
ASK_EVERY = 0.25  # the scheduler, while the conversation still says the run is under way
ASK_EVERY_SETTLED = 0.02  # the scheduler, once the run has recorded its end and only the job's exit is awaited


# --------------------------------------------------------------------------- submitting


def record_submission(conv_dir: Path, backend: Backend, job: dict[str, Any]) -> State:
    """Mark the conversation `queued` for the job just submitted; if that is refused
    (someone started the run meanwhile), the job is cancelled."""
    try:
        with transaction(conv_dir) as txn:
            txn.record("submitted", backend=backend.NAME, job=job)
            txn.set_status(Status.QUEUED, f"submitted to {backend.NAME} as job {job['id']}")
            return txn.state
    except BaseException:
        backend.cancel(Runtime(backend=backend.NAME, job=job))
        raise


class NotClaimed(Exception):
    """The job's watcher found the conversation not waiting for its job."""


def claim(conv_dir: Path, job: dict[str, Any], timeout: float = CLAIM_TIMEOUT) -> str:
    """In the job, on its node: wait until the conversation names this job (the
    submitter records it once the scheduler has answered), then record that the job
    started, where, and take the run from `queued` to `starting` for this process.
    Returns the start token its child must carry; raises `NotClaimed` (saying why) if
    the conversation is not waiting for this job."""
    deadline = time.monotonic() + timeout
    while True:
        state = load_state(conv_dir)
        if _waits_for(state, job):
            with transaction(conv_dir) as txn:
                if _waits_for(txn.state, job):
                    txn.record("job_started", node=job.get("node"), cluster=job.get("cluster"), host=host_identity())
                    token = f"{state.id}-{os.urandom(8).hex()}"
                    me = os.getpid()
                    txn.set_status(Status.STARTING, f"job {job['id']} started on {job.get('node')}", token=token,
                                   starter={"pid": me, "start_ticks": process_start_ticks(me),
                                            "command": f"the watcher of job {job['id']}", "host": host_identity()})
                    return token
        elif state.status is not Status.QUEUED and (state.runtime.job or {}).get("id") == job["id"]:
            raise NotClaimed(f"conversation {state.id} is {state.status.value}; job {job['id']} has nothing to do")
        if time.monotonic() > deadline:
            raise NotClaimed(f"conversation {state.id} was not queued for job {job['id']} within {timeout:g} s")
        time.sleep(0.02)


def _waits_for(state: State, job: dict[str, Any]) -> bool:
    return state.status is Status.QUEUED and str((state.runtime.job or {}).get("id")) == str(job["id"])


def start_failed(conv_dir: Path, reason: str) -> None:
    """The job's watcher could not get the run going: say so, if nothing else has."""
    with transaction(conv_dir) as txn:
        if txn.state.status in (Status.QUEUED, Status.STARTING):
            txn.record("exited", exit_code=None)
            txn.set_status(Status.ERROR, reason, kind="start")


# --------------------------------------------------------------------------- stopping


def _job_ended(backend: Backend, runtime: Runtime) -> bool:
    """Whether every process of the run's job is gone, in the scheduler's own word."""
    return backend.probe(runtime, ask_scheduler=True).liveness is Liveness.GONE


def wait_job_ended(conv_dir: Path, runtime: Runtime, timeout: float, give_up: Callable[[], bool]) -> bool:
    """Wait until the run's job has ended; the scheduler is asked often only once the
    run has recorded its own end (until then, the files say more, for less)."""
    backend = backends.of(runtime)
    deadline = time.monotonic() + timeout
    asked = 0.0
    while True:
        now = time.monotonic()
        settled = load_state(conv_dir).status not in ACTIVE
        if now - asked >= (ASK_EVERY_SETTLED if settled else ASK_EVERY):
            if _job_ended(backend, runtime):
                return True
            asked = now
        if now >= deadline or give_up():
            return False
        time.sleep(POLL)


def stop(conv_dir: Path, state: State, *, grace: float, requested_by: str, hurry: Callable[[], bool],
         started: float) -> StopReport:
    """`control.stop_run` for a run a scheduler holds; called under the stop lock.

    A job still queued is cancelled outright, and the conversation goes back to
    `paused` with nothing run. A running one gets the ladder described above.
    """
    from supervisor import control

    backend = backends.of(state.runtime)
    runtime = state.runtime
    if backend.probe(runtime).liveness is Liveness.GONE:
        state = control.reconcile_locked(conv_dir)
        return control.StopReport(state.id, state.status, already_stopped=True)
    signalled = time.monotonic()
    if state.status is Status.QUEUED:
        signals = ["cancel"]
        backend.cancel(runtime)
        ended = wait_job_ended(conv_dir, runtime, GONE_WAIT, give_up=lambda: False)
    else:
        signals = ["SIGINT"]
        backend.signal(runtime, signal.SIGINT)
        ended = wait_job_ended(conv_dir, runtime, grace, give_up=hurry)
        if not ended:
            signals.append("SIGTERM")
            backend.signal(runtime, signal.SIGTERM)
            ended = wait_job_ended(conv_dir, runtime, 0 if hurry() else TERM_WAIT, give_up=hurry)
        if not ended:
            signals.append("SIGKILL")
            backend.signal(runtime, signal.SIGKILL, everyone=True)
            ended = wait_job_ended(conv_dir, runtime, GONE_WAIT, give_up=lambda: False)
    if not ended:
        # Only the scheduler's word ends a run: without it, nothing is recorded.
        raise backends.BackendError(f"{backend.describe(runtime)} was sent {', '.join(signals)} but has not ended "
                                    f"(or {backend.NAME} cannot say so); the run is left as it is")
    exit_ms = round((time.monotonic() - signalled) * 1000, 1)
    method = "cancel" if signals == ["cancel"] else {1: "sigint", 2: "sigterm", 3: "sigkill"}[len(signals)]
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    where = backend.describe(runtime)
    with transaction(conv_dir) as txn:
        if txn.state.status in (Status.QUEUED, Status.STARTING):  # the job may have begun to start it meanwhile
            txn.record("interrupted", during="queued", signal=signals[-1], by=requested_by)
            txn.record("exited", exit_code=None)
            txn.set_status(Status.PAUSED, f"interrupted while queued: {where} was cancelled before it started; "
                                          "nothing ran", kind="interrupt")
        elif txn.state.status is Status.RUNNING:
            # Neither the child nor its watcher could write their own record.
            during = "model_call" if txn.state.current_call else "unknown"
            txn.record("interrupted", during=during, signal=signals[-1], by=requested_by)
            txn.record("exited", exit_code=None)
            txn.set_status(Status.PAUSED, f"interrupted; {where} did not stop by itself and got {signals[-1]}",
                           kind="interrupt")
        txn.record("stopped", requested_by=requested_by, pid=os.getpid(), signals=signals, method=method,
                   duration_ms=duration_ms, exit_ms=exit_ms, backend=backend.NAME, job=(runtime.job or {}).get("id"),
                   killed_descendants=0, survivors=[], escaped=[])
        status = txn.state.status
    return control.StopReport(state.id, status, already_stopped=False, method=method, signals=signals,
                              duration_ms=duration_ms, exit_ms=exit_ms)
