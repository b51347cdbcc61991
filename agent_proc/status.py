"""The life cycle of a conversation: its statuses and the legal moves between them.

Every status change anywhere in the project goes through `check_transition`, so the
rules below are the only place that says what may happen to a run.

    idle ──▶ starting ──▶ running ──▶ finished
                │  ▲        │  ╲
       stopped  │  │ resume │   ╲──▶ error
 before it ran  ▼  │        ▼ pause / interrupt
                 paused ◀───┘

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
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    ERROR = "error"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.IDLE: frozenset({Status.STARTING, Status.ERROR}),
    Status.STARTING: frozenset({Status.RUNNING, Status.PAUSED, Status.ERROR}),
    Status.RUNNING: frozenset({Status.PAUSED, Status.FINISHED, Status.ERROR}),
    Status.PAUSED: frozenset({Status.STARTING, Status.ERROR}),
    Status.FINISHED: frozenset({Status.STARTING}),
    Status.ERROR: frozenset({Status.STARTING}),
}

# Statuses from which a new child process may be started for the conversation.
STARTABLE: frozenset[Status] = frozenset(s for s, targets in TRANSITIONS.items() if Status.STARTING in targets)

# Statuses in which a process is working on the conversation, or is about to: they can
# be stopped, take messages into the inbox, and are listed by `agent ps`.
ACTIVE: frozenset[Status] = frozenset({Status.STARTING, Status.RUNNING})


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
