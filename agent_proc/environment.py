"""How the supervisor and the child recognise each other: the environment variables the
child is started with, and the start time that identifies a process exactly."""

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
