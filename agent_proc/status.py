"""The life cycle of a conversation: its statuses and the legal moves between them.

Every status change anywhere in the project goes through `check_transition`, so the
rules below are the only place that says what may happen to a run.

    idle ──start──▶ running ──▶ finished
      ╲               │  ▲  ╲
       ╲      pause / │  │   ╲──▶ error
        ╲   interrupt ▼  │ resume
         ╲          paused
          ╲            ▲
           ╲──submit──▶ queued ──▶ running (the job started)

`queued` is a run handed to a scheduler (`--backend slurm`) whose job has not started
yet: the first process of the job takes it to `running`. Interrupting it cancels the
job and leaves it `paused` with nothing run; a job that vanished before it started
leaves it `paused` (cancelled) or `error`. Every status from which a run may start
may also be submitted.

`finished` and `error` can be resumed too: a user may `send` a follow-up to a finished
conversation, or retry one that failed.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    ERROR = "error"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.IDLE: frozenset({Status.QUEUED, Status.RUNNING, Status.ERROR}),
    Status.QUEUED: frozenset({Status.RUNNING, Status.PAUSED, Status.ERROR}),
    Status.RUNNING: frozenset({Status.PAUSED, Status.FINISHED, Status.ERROR}),
    Status.PAUSED: frozenset({Status.QUEUED, Status.RUNNING, Status.ERROR}),
    Status.FINISHED: frozenset({Status.QUEUED, Status.RUNNING}),
    Status.ERROR: frozenset({Status.QUEUED, Status.RUNNING}),
}

# Statuses from which a new child process may be started for the conversation
# (`queued` among them: the job's child takes its own submission over).
STARTABLE: frozenset[Status] = frozenset(s for s, targets in TRANSITIONS.items() if Status.RUNNING in targets)
# Statuses from which a user may start the run again (`agent resume`), or submit it.
RESUMABLE: frozenset[Status] = frozenset(s for s, targets in TRANSITIONS.items() if Status.QUEUED in targets)
# A run is under way: a process or a scheduler's job holds the conversation.
ACTIVE: frozenset[Status] = frozenset({Status.QUEUED, Status.RUNNING})


class IllegalTransition(Exception):
    """A status change that the life cycle does not allow."""

    def __init__(self, current: Status, target: Status) -> None:
        super().__init__(f"cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


def check_transition(current: Status, target: Status) -> None:
    """Raise `IllegalTransition` unless `current -> target` is a legal move."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
