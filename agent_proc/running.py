"""The set of running conversations, kept as one empty file per run in `$AGENT_HOME/running/`.

`agent ps` lists running runs among thousands of conversations by reading this
small directory instead of every conversation. It is an index, not the truth: the
marker is made before the commit that makes a conversation `running` and removed
after the commit that ends it, so the set always holds every running conversation
(and, after a crash, perhaps a few that are not: readers check each state, and a
transaction on a stopped conversation removes its marker).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

RUNNING_DIR = "running"
_ID = re.compile(r"^[0-9a-f]{12}$")


def _marker(conv_dir: Path) -> Path:
    return conv_dir.parent.parent / RUNNING_DIR / conv_dir.name


def mark(conv_dir: Path) -> None:
    """Called at every commit of a running conversation: one open of an existing file."""
    path = _marker(conv_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)


def unmark(conv_dir: Path) -> None:
    with contextlib.suppress(OSError):  # a leftover marker only costs a reader one check
        _marker(conv_dir).unlink(missing_ok=True)


def marked_ids(home: Path) -> list[str]:
    try:
        return [n for n in os.listdir(home / RUNNING_DIR) if _ID.match(n)]
    except FileNotFoundError:
        return []
