"""The `local` backend: runs are processes on this machine (the default).

The pid recorded with a run is checked only on the host and in the PID namespace
that recorded it; from anywhere else a local run's liveness is unknown, and it is
left alone rather than declared dead.
"""

from __future__ import annotations

import signal as signals
from pathlib import Path

from agent_proc.conversation import Runtime
from agent_proc.environment import same_host
from supervisor.backends import Launch, Liveness, Probe, StartRequest

NAME = "local"


def start(conv_dir: Path, request: StartRequest) -> Launch:
    """Spawn the watcher here, in a session of its own."""
    from supervisor import control

    token = control.mark_starting(conv_dir, "agent run -d")
    return Launch(process=control.spawn_watcher(conv_dir, grace=request.grace, token=token,
                                                keep_partial=request.keep_partial), token=token)


def signal(runtime: Runtime, sig: int, *, everyone: bool = False) -> bool:
    """Signal the run's process (everyone: its whole tree and whatever carries its marker)."""
    from supervisor import processes

    process = processes.identify(runtime) if same_host(runtime.host) else None
    if process is None:
        return False
    targets = [process]
    if everyone:
        targets = processes.snapshot_tree(process)
        targets += [p for p in processes.marked(runtime.marker) if p not in targets]
    return bool(processes.send(targets, sig))


def cancel(runtime: Runtime) -> None:
    signal(runtime, signals.SIGKILL, everyone=True)


def probe(runtime: Runtime, *, ask_scheduler: bool = False) -> Probe:
    from supervisor import processes

    host = (runtime.host or {}).get("hostname") or "this machine"
    if not same_host(runtime.host):
        return Probe(Liveness.UNKNOWN, f"pid {runtime.pid} is on {host}; only a command there can check it")
    if processes.identify(runtime) is None:
        return Probe(Liveness.GONE, f"process {runtime.pid} is gone without recording an outcome "
                                    "(crashed, killed, or the machine restarted)")
    return Probe(Liveness.ALIVE, describe(runtime))


def this_job() -> None:
    return None  # a local watcher is in no scheduler's job


def unavailable() -> None:
    return None


def describe(runtime: Runtime) -> str:
    host = (runtime.host or {}).get("hostname")
    return f"pid {runtime.pid}" + (f" on {host}" if host else "")
