"""The `agent ps` table: one line per conversation, fitted to the terminal."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from typing import Any, TextIO

from supervisor import render

COLUMNS = ("ID", "NAME", "STATUS", "AGE", "MODEL", "COST", "PROMPT")
STATUS_COLOURS = {"starting": "36", "running": "32", "paused": "33", "error": "31", "finished": "34", "idle": "2"}
MIN_PROMPT = 20


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return not os.environ.get("NO_COLOR") and stream.isatty()


def printable(text: str) -> str:
    """One line with no control characters, so a prompt cannot move the cursor."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _cost(doc: dict[str, Any]) -> str:
    shown = render.cost(doc["cost_usd"])
    return f"~{shown}" if doc["cost_estimated"] and doc["cost_usd"] is not None else shown


def ps_table(docs: list[dict[str, Any]], *, colour: bool, truncate: bool, width: int | None = None) -> str:
    """The table (its header even when `docs` is empty). The prompt is cut so that a
    line fits in `width` (default: the terminal's) unless `truncate` is off."""
    now = datetime.now(timezone.utc)
    rows = [list(COLUMNS)] + [
        [d["id"], printable(d["name"] or "-"), d["status"], render.age(d["created_at"], now),
         printable(d["model"]), _cost(d), printable(d["prompt"])]
        for d in docs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    if truncate:
        width = width or shutil.get_terminal_size((120, 24)).columns
        room = max(MIN_PROMPT, width - sum(widths[:-1]) - 2 * (len(COLUMNS) - 1))
        for row in rows[1:]:
            if len(row[-1]) > room:
                row[-1] = row[-1][: room - 1] + "…"
        widths[-1] = min(widths[-1], room)
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        if colour and n and (code := STATUS_COLOURS.get(row[2])):
            cells[2] = f"\033[{code}m{row[2]}\033[0m" + " " * (widths[2] - len(row[2]))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
