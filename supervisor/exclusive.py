"""`agent run --exclusive`: do not start a run while one like it is running (for cron).

"Like it" means the same name, or the same (non-empty) set of labels. The check
and the start happen under the home's `exclusive.lock`, held until the new run's
process has taken its conversation over, so two cron jobs starting at once cannot
both get through.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from supervisor import index

EXCLUSIVE_LOCK = "exclusive.lock"


class Lock:
    """The home's exclusive.lock, held from `acquire` until `release` (safe to call twice)."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd: int | None = os.open(home / EXCLUSIVE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def conflict(home: Path, name: str | None, labels: dict[str, str]) -> tuple[str, str] | None:
    """The running conversation a new run called `name` with `labels` would duplicate,
    as (its id, what is the same), or None."""
    for entry in index.running_entries(home, []):
        doc = entry.summary
        if name and doc["name"] == name:
            return doc["id"], f"name {name}"
        if labels and doc["labels"] == labels:
            return doc["id"], "labels " + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return None
