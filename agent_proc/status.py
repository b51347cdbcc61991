"""The life cycle of a conversation: its statuses and the legal moves between them.

Every status change anywhere in the project goes through `check_transition`, so the
rules below are the only place that says what may happen to a run.

    idle ──▶ starting ──▶ running ──▶ finished
      │        │  ▲         │  ╲
      │ stopped│  │ resume  │   ╲──▶ error
      │ before ▼  │         ▼ pause / interrupt
      │ it ran  paused ◀────┘
      │           ▲ cancelled
      ╰─submit──▶ queued ──(the job started)──▶ starting

`queued` is a run handed to a scheduler (`--backend slurm`) whose job has not started
yet: the job's watcher takes it to `starting` (with its own start token) once the job
runs. Interrupting it cancels the job and leaves it `paused` with nothing run; a job
that vanished before it started leaves it `paused` (cancelled) or `error`. Every
status from which a run may start may also be submitted.

`starting` is recorded (with a start token and the process doing the start) by the
command that is about to start a child, under the conversation's lock, before the
child exists. Only a child carrying that token may take `starting` to `running`; a
stop that comes first moves the conversation to `paused` itself, and a child that
arrives late finds nothing to take over. `finished` and `error` can be resumed too:
a user may `send` a follow-up to a finished conversation, or retry one that failed.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    IDLE = "idle"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    ERROR = "error"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.IDLE: frozenset({Status.QUEUED, Status.STARTING, Status.ERROR}),
    Status.QUEUED: frozenset({Status.STARTING, Status.PAUSED, Status.ERROR}),
    Status.STARTING: frozenset({Status.RUNNING, Status.PAUSED, Status.ERROR}),
    Status.RUNNING: frozenset({Status.PAUSED, Status.FINISHED, Status.ERROR}),
    Status.PAUSED: frozenset({Status.QUEUED, Status.STARTING, Status.ERROR}),
    Status.FINISHED: frozenset({Status.QUEUED, Status.STARTING}),
    Status.ERROR: frozenset({Status.QUEUED, Status.STARTING}),
}

# Statuses from which a user may start the run (`agent run`, `agent resume`), here or
# by submitting it: a queued run's own job takes it to `starting`, nobody else.
STARTABLE: frozenset[Status] = frozenset(s for s, targets in TRANSITIONS.items() if Status.QUEUED in targets)
RESUMABLE = STARTABLE

# Statuses in which a process or a scheduler's job is working on the conversation, or
# is about to: they can be stopped, take messages into the inbox, and are listed by `agent ps`.
ACTIVE: frozenset[Status] = frozenset({Status.QUEUED, Status.STARTING, Status.RUNNING})


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
