"""Removing conversations: `agent rm` and `agent prune`.

A conversation goes with its name (free again) and its running marker. `prune`
removes only stopped conversations, and checks that again under the conversation's
lock at the moment of removal, so a run resumed meanwhile is left alone.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agent_proc import conversation, naming, running
from agent_proc.status import Status
from supervisor.query import iso

# An idle conversation this young may be one that `agent run` is starting.
STARTING_GRACE_S = 60.0
STOPPED = {Status.PAUSED.value, Status.FINISHED.value, Status.ERROR.value}


def removable(doc: dict[str, Any], now: datetime | None = None) -> bool:
    """Whether prune may remove the conversation `doc` (a summary): stopped, or idle
    for long enough that nobody is starting it."""
    if doc["status"] in STOPPED:
        return True
    young = iso((now or datetime.now(timezone.utc)) - timedelta(seconds=STARTING_GRACE_S))
    return doc["status"] == Status.IDLE.value and doc["created_at"] < young


def disk_usage(conv_dir: Path) -> int:
    """Bytes the conversation's files take on disk."""
    total = 0
    for folder, _, files in os.walk(conv_dir):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def remove(conv_dir: Path, *, only_if_removable: bool = False) -> int | None:
    """Delete a conversation; return the bytes freed, or None if `only_if_removable`
    and it turned out to be running (or starting) when its lock was held."""
    freed = disk_usage(conv_dir)
    fd = conversation.open_fd(conv_dir / conversation.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        conversation.wait_for_lock(fd, f"conversation {conv_dir.name}")
        state = conversation.load_state(conv_dir)
        if only_if_removable:
            from supervisor.summary import summary

            if not removable(summary(state)):
                return None
        shutil.rmtree(conv_dir)
    finally:
        os.close(fd)
    naming.release(state.name, state.id, conv_dir.parent.parent)
    running.unmark(conv_dir)
    return freed


def size_text(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} GB"  # pragma: no cover
