"""Where runs execute: this machine (`local`, the default) or a cluster scheduler.

A backend is one module in this package that provides:

    NAME: str
    start(conv_dir, request: StartRequest) -> Launch
        Start the run's supervisor (`python -m supervisor.watcher ID`) somewhere.
        `local` spawns it here (`Launch.process`); a scheduler submits a job that
        `exec`s it (`Launch.job`: at least {"id": ...}), and returns at once.
    signal(runtime, sig, *, everyone=False) -> bool
        Deliver `sig` to the run's supervisor (everyone: to every process of the
        run). False if there was nothing to signal.
    cancel(runtime) -> None
        End the run the scheduler's way: a job still waiting is removed.
    probe(runtime, *, ask_scheduler=False) -> Probe
        Whether the run is alive: yes, no (with the reason), or unknown (nobody can
        tell from here; never a reason to give up on the run). With ask_scheduler,
        whether any process of its job is left, even where the pid could be checked.
    describe(runtime) -> str
        Where it runs, for people.
    this_job() -> dict | None
        In the watcher: the job it runs in (id, cluster, node), from the environment.
    unavailable() -> str | None
        Why runs cannot be started from here (its commands are missing), checked
        before a conversation is created.

The supervisor on the run's side is the same everywhere: the watcher starts the
child, enforces the limits and turns SIGINT or SIGTERM into our own stop ladder
(`control.stop_run`). So a scheduler only has to deliver a signal to that one
process; adding one (Ray Jobs, Kubernetes; see docs/cluster.md) is one new module.
A pid is only ever looked up on the host (and PID namespace) that recorded it
(`agent_proc.environment.same_host`); anywhere else, the scheduler is asked.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent_proc.conversation import Runtime

if TYPE_CHECKING:  # the CLI imports this module on every start; subprocess only when it starts a run
    import subprocess

DEFAULT = "local"


class BackendError(Exception):
    """A backend could not do what was asked (scheduler missing, job refused); one line."""


class Liveness(str, Enum):
    ALIVE = "yes"
    GONE = "no"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Probe:
    liveness: Liveness
    detail: str  # for people: where it runs, how it ended, or why nobody can tell
    cancelled: bool = False  # GONE because someone cancelled the job (not a failure of the run)


@dataclass(frozen=True)
class StartRequest:
    grace: float  # the watcher's stop ladder: seconds between SIGINT and SIGTERM
    keep_partial: bool = False
    run_timeout: float | None = None  # --timeout: a scheduler backs it with its own limit
    args: tuple[str, ...] = ()  # passed to the scheduler as they are (--sbatch-arg)


@dataclass
class Launch:
    process: subprocess.Popen[bytes] | None = None  # a supervisor started on this machine
    job: dict[str, Any] | None = None  # a scheduler's job, to be recorded with the run
    token: str | None = None  # the start token `process`'s child carries (see control.mark_starting)


class Backend(Protocol):
    NAME: str

    def start(self, conv_dir: Path, request: StartRequest) -> Launch: ...
    def signal(self, runtime: Runtime, sig: int, *, everyone: bool = False) -> bool: ...
    def cancel(self, runtime: Runtime) -> None: ...
    def probe(self, runtime: Runtime, *, ask_scheduler: bool = False) -> Probe: ...
    def describe(self, runtime: Runtime) -> str: ...
    def this_job(self) -> dict[str, Any] | None: ...
    def unavailable(self) -> str | None: ...


@functools.cache
def names() -> list[str]:
    """Every backend there is: the modules of this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get(name: str) -> Backend:
    if name not in names():
        raise BackendError(f"unknown backend {name!r} (known: {', '.join(names())})")
    module: Any = importlib.import_module(f"{__name__}.{name}")
    return module  # type: ignore[no-any-return]


def of(runtime: Runtime) -> Backend:
    """The backend that started the run `runtime` describes."""
    return get(runtime.backend or DEFAULT)


def prefetch(conv_dirs: list[Path]) -> None:
    """Let each scheduler answer for many runs at once (`agent ps`): a backend module
    may have `prefetch(runtimes)`, after which its `probe` uses what it learnt."""
    from agent_proc.conversation import ConversationError, load_state
    from agent_proc.status import ACTIVE

    runtimes: dict[str, list[Runtime]] = {}
    for conv_dir in conv_dirs:
        try:
            state = load_state(conv_dir)
        except ConversationError:
            continue  # reported by the caller
        if state.status in ACTIVE and state.runtime.backend != DEFAULT:
            runtimes.setdefault(state.runtime.backend, []).append(state.runtime)
    for name, group in runtimes.items():
        try:
            backend: Any = get(name)
        except BackendError:
            continue
        if hasattr(backend, "prefetch"):
            backend.prefetch(group)
