"""Listing thousands of conversations quickly, with the files still the source of truth.

`$AGENT_HOME/index.json` keeps, for each conversation, its summary (`summary.py`),
its usage per day and model, and the size and modification time of its history
when they were taken. A history is only ever appended to, so a conversation whose
`events.jsonl` has the same size and time is unchanged and its entry is used as it
is; any other is read again from its files, and the index is rewritten. Deleting
the index is always safe: the next listing rebuilds it.

Running (and queued) conversations come from `agent_proc.running` instead (a
handful of files, not thousands), and each is reconciled, so a run whose process
died is never shown running; its summary also says what its backend said of its
liveness (`liveness`, `liveness_detail`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_proc import conversation, running
from agent_proc.conversation import ConversationError, State
from agent_proc.status import ACTIVE
from supervisor.summary import summary

INDEX_FILE = "index.json"
INDEX_VERSION = 1
# Summary fields of any length, left out of the index so that it stays small; `complete` reads them.
UNCACHED = ("final_answer",)


@dataclass
class Entry:
    """One conversation as listings see it."""

    summary: dict[str, Any]
    usage: dict[str, dict[str, Any]]  # State.usage: totals per "day model"
    root: Path  # the conversations directory

    @property
    def dir(self) -> Path:
        return self.root / self.summary["id"]


def _entry(state: State, conv_dir: Path, probe: Any = None) -> Entry:
    doc = summary(state)
    if probe is not None:  # a run under way: what its backend says of it
        doc.update(liveness=probe.liveness.value, liveness_detail=probe.detail)
    return Entry(doc, state.usage, conv_dir.parent)


def _history_key(events_path: str) -> list[int] | None:
    try:
        st = os.stat(events_path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


ACTIVE_VALUES = frozenset(status.value for status in ACTIVE)


def _load(home: Path) -> dict[str, Any]:
    try:
        doc = json.loads((home / INDEX_FILE).read_bytes())
        entries = doc["entries"] if doc.get("version") == INDEX_VERSION else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # missing or damaged: rebuilt from the files
    return entries if isinstance(entries, dict) else {}


def _fresh(hit: Any, key: list[int] | None) -> bool:
    """Whether a cached entry (`[key, summary, usage]`) is for this very history."""
    return (key is not None and isinstance(hit, list) and len(hit) == 3 and hit[0] == key
            and isinstance(hit[1], dict) and hit[1].get("status") not in ACTIVE_VALUES)


def _save(home: Path, entries: dict[str, Any]) -> None:
    data = json.dumps({"version": INDEX_VERSION, "entries": entries}, separators=(",", ":")).encode()
    with contextlib.suppress(OSError):  # a read-only home still lists, only more slowly
        conversation.write_atomic(home / INDEX_FILE, data)


def all_entries(home: Path, problems: list[str]) -> list[Entry]:
    """Every conversation in `home` (in no particular order). A damaged one is left out
    and described in `problems`."""
    root = conversation.conversations_root(home)
    cached = _load(home)
    fresh: dict[str, Any] = {}
    entries: list[Entry] = []
    changed = False
    events_file = os.sep + conversation.EVENTS_FILE
    for conv_id in conversation.list_ids(home):
        key = _history_key(str(root) + os.sep + conv_id + events_file)  # strings: 10,000 Paths cost 100 ms
        hit = cached.get(conv_id)
        if _fresh(hit, key):
            fresh[conv_id] = hit
            entries.append(Entry(hit[1], hit[2], root))
            continue
        conv_dir = root / conv_id
        if (current := _current(conv_dir, problems)) is None:
            continue
        state, probe = current
        entry = _entry(state, conv_dir, probe)
        entries.append(entry)
        if state.status not in ACTIVE and key is not None:
            # The key was taken before reading: a history that grew meanwhile is read again next time.
            fresh[conv_id] = [key, {k: v for k, v in entry.summary.items() if k not in UNCACHED}, entry.usage]
            changed = True
    if changed or any(conv_id not in fresh for conv_id in cached):
        _save(home, fresh)
    return entries


def complete(entries: list[Entry]) -> None:
    """Fill in the summary fields the index leaves out (for JSON output), from the files."""
    for entry in entries:
        if any(field not in entry.summary for field in UNCACHED):
            try:
                state = conversation.load_state(entry.dir)
            except ConversationError:
                continue  # removed or damaged since it was listed: shown without them
            entry.summary.update({field: summary(state)[field] for field in UNCACHED})


def _current(conv_dir: Path, problems: list[str]) -> tuple[State, Any] | None:
    """The state, reconciled if it says a run is under way (psutil is imported only
    then), with what the run's backend said of it (None if nothing was asked); None
    if it cannot be read, and why in `problems`."""
    probe = None
    try:
        state = conversation.load_state(conv_dir)
        if state.status in ACTIVE:
            from supervisor import control

            seen = control.observe_seen(conv_dir)  # shown as it is even where it cannot be recorded
            state, probe = seen.state, seen.probe
        if not state.prompt:  # recorded by an older version, which kept no preview
            state.prompt = _first_prompt(conv_dir)
    except ConversationError as error:
        problems.append(str(error))
        return None
    return state, probe


def _first_prompt(conv_dir: Path) -> str:
    events, _ = conversation.read_events(conv_dir)
    for event in events:
        if event["type"] == "user_message" and event.get("source") == "prompt":
            preview = State(id="")
            conversation.apply_event(preview, event)
            return preview.prompt
    return ""


def marked_dirs(home: Path) -> list[Path]:
    """The conversations marked as under way (running or queued), some perhaps no longer."""
    root = conversation.conversations_root(home)
    return [root / conv_id for conv_id in running.marked_ids(home)]


def running_entries(home: Path, problems: list[str]) -> list[Entry]:
    """The conversations under way now (running or queued)."""
    root = conversation.conversations_root(home)
    entries = []
    for conv_id in running.marked_ids(home):
        conv_dir = root / conv_id
        if not conv_dir.is_dir():  # removed by hand
            running.unmark(conv_dir)
            continue
        if (current := _current(conv_dir, problems)) is None:
            continue
        state, probe = current
        if state.status in ACTIVE:
            entries.append(_entry(state, conv_dir, probe))
        else:
            _forget(conv_dir)
    return entries


def _forget(conv_dir: Path) -> None:
    """Drop a stopped conversation's leftover running marker, under its lock: a
    transaction that leaves a conversation stopped removes the marker."""
    with contextlib.suppress(ConversationError, OSError), conversation.transaction(conv_dir):
        pass
