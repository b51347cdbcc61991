"""How the supervisor and the child recognise each other: the environment variables the
child is started with, the start time that identifies a process exactly, and the host
(machine and PID namespace) in which a pid means anything."""

from __future__ import annotations

import functools
import os

# A token unique to one child start; with the create time, proof that a pid is ours.
MARKER_ENV = "AGENT_RUN_MARKER"
# The pid of the process supervising the child (the foreground `agent run`), if any.
SUPERVISOR_ENV = "AGENT_SUPERVISOR_PID"


def process_start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (/proc/PID/stat, field 22).

    Unlike a create time in wall-clock seconds, it does not move when the clock is
    stepped, so it identifies a process exactly.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)
    except (OSError, IndexError, ValueError):
        return None


@functools.cache  # constant for a process's life; read once (`ps` asks for every run). Not to be modified.
def host_identity() -> dict[str, str | None]:
    """Where this process runs: its hostname, the kernel's boot id (new at every boot)
    and its PID namespace. A recorded pid may only be looked up where all three match."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id: str | None = f.read().strip()
    except OSError:
        boot_id = None
    try:
        pid_ns: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = None
    return {"hostname": os.uname().nodename, "boot_id": boot_id, "pid_ns": pid_ns}


def same_host(recorded: dict[str, str | None] | None) -> bool:
    """Whether a pid recorded with `recorded` (from `host_identity`) can be checked from
    here. A runtime recorded before hosts were kept is taken to be from this machine."""
    if not recorded:
        return True
    here = host_identity()
    return all(recorded.get(key) in (None, here[key]) for key in here)
