"""`agent events`: the status changes of every conversation, as they happen, as JSON lines.

Every status change is a `status` event appended to a conversation's events.jsonl,
so following those files is exact: no change is missed however quickly the next one
comes, and each conversation's changes come in order.

How the files are followed, and why this way at 10,000 conversations: one inotify
watch per events.jsonl (IN_MODIFY fires on each append) and one on the conversations
directory (a new or removed conversation; a new one's own directory is watched only
until its events.jsonl appears). While nothing happens the process sleeps in poll(2)
and uses no CPU at all; an append wakes it at once, and it reads only the new bytes
of that one file. Watching each conversation's directory instead would also wake it
for every chunk a run prints to output.log. Polling the files' sizes would cost
10,000 stat calls per round, about 26 ms of CPU on the development machine: at the
5 to 7 rounds a second that the 200 ms aim needs, 13 to 18 % of a core for as long
as it runs, while nothing happens. Start-up is one inotify_add_watch and one stat per
conversation (about 100 ms in all at 10,000). If the kernel's watch limit
(fs.inotify.max_user_watches) runs out, the conversations beyond it are polled once
a second, with a warning.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_proc import conversation
from supervisor.filters import Filters, epoch

IN_MODIFY = 0x002
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (of the name that follows)

POLL_FALLBACK = 1.0  # seconds between size checks of conversations inotify cannot watch


class Inotify:
    """The few inotify(7) calls needed, through ctypes (no dependency)."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_init1: {os.strerror(ctypes.get_errno())}")

    def add(self, path: str | Path, mask: int) -> int:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number), str(path))
        return wd

    def remove(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, wd)  # fails only if the watch is already gone

    def read(self) -> list[tuple[int, int, str]]:
        """The events waiting, as (watch descriptor, mask, name)."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        found, at = [], 0
        while at < len(data):
            wd, mask, _cookie, length = _EVENT_HEADER.unpack_from(data, at)
            at += _EVENT_HEADER.size
            name = data[at:at + length].rstrip(b"\0").decode(errors="replace")
            at += length
            found.append((wd, mask, name))
        return found

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Followed:
    """One conversation's events.jsonl and how far it has been read."""

    conv_dir: Path
    offset: int
    cutoff: str  # events stamped before this are not shown (ISO time; "" shows all)


@dataclass
class EventStream:
    """Follows every conversation under `root` and calls `emit` with each status change
    that passes `filters`."""

    root: Path
    filters: Filters
    emit: Callable[[dict[str, Any]], None]
    since: str | None = None  # ISO time: also replay the changes recorded since then
    warn: Callable[[str], None] = lambda text: print(f"warning: {text}", file=sys.stderr)
    inotify: Inotify = field(default_factory=Inotify)
    by_wd: dict[int, str] = field(default_factory=dict)  # watch -> conversation id
    followed: dict[str, Followed] = field(default_factory=dict)
    # New conversations whose events.jsonl is not written yet: a watch on their directory
    # says when it is (watch -> conversation id).
    pending: dict[int, str] = field(default_factory=dict)
    polled: set[str] = field(default_factory=set)  # beyond the watch limit
    root_wd: int = -1

    def __post_init__(self) -> None:
        self._since_epoch = epoch(self.since) if self.since else 0.0

    def start(self) -> None:
        """Watch everything; replay what `since` asks for. Changes made from now on are
        seen by the watches, so nothing falls between the replay and the live stream."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root_wd = self.inotify.add(self.root, IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR)
        replay: list[dict[str, Any]] = []
        for conv_id in os.listdir(self.root):
            if _is_conversation_id(conv_id) and self._follow(conv_id, origin="found") \
                    and self.followed[conv_id].offset == 0:
                replay += self._read_new(conv_id, emit=False)
        for event in sorted(replay, key=lambda e: (e["time"], e["id"], e["seq"])):
            self.emit(event)

    def _follow(self, conv_id: str, *, origin: str) -> bool:
        """Start following one conversation; False if its events.jsonl is not there yet.

        `origin` is "found" (there at start-up: only `since` replays its past),
        "created" (made since: all of it is news) or "moved" (moved in by `agent import`:
        its history is old, only what is appended from now on is news). Run once per
        conversation at start-up, so it keeps to plain strings and one stat."""
        events_path = f"{self.root}/{conv_id}/{conversation.EVENTS_FILE}"
        try:
            wd = self.inotify.add(events_path, IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF)
        except FileNotFoundError:
            if origin == "created":
                self._await_history(conv_id)
            return False
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            if not self.polled:
                self.warn("the inotify watch limit is reached (sysctl fs.inotify.max_user_watches); "
                          "the conversations beyond it are checked once a second")
            self.polled.add(conv_id)
            wd = None
        if wd is not None:
            self.by_wd[wd] = conv_id
        if origin == "created":
            offset = 0
        else:
            stat = os.stat(events_path)
            # An event is stamped before its append, which sets the file's (coarse)
            # mtime: a file last written before `since` has nothing to replay.
            replay_it = origin == "found" and self.since is not None and stat.st_mtime + 1 >= self._since_epoch
            offset = 0 if replay_it else stat.st_size
        self.followed[conv_id] = Followed(self.root / conv_id, offset, self.since or "")
        return True

    def _read_new(self, conv_id: str, *, emit: bool = True) -> list[dict[str, Any]]:
        """The status changes appended to one conversation since the last read."""
        followed = self.followed.get(conv_id)
        if followed is None:
            return []
        try:
            # A writer whose commit failed cuts its append off again: never read past the end.
            followed.offset = min(followed.offset, os.path.getsize(followed.conv_dir / conversation.EVENTS_FILE))
            events, followed.offset = conversation.read_events(followed.conv_dir, followed.offset)
        except FileNotFoundError:  # removed
            self._forget(conv_id)
            return []
        except conversation.ConversationError as error:
            self.warn(f"{conv_id}: {error}; no longer followed")
            self._forget(conv_id)
            return []
        changes = [event for event in events if event["type"] == "status" and event["ts"] >= followed.cutoff]
        if not changes:
            return []
        identity = _identity(followed.conv_dir)
        shown = []
        for change in changes:
            line = _line(conv_id, identity, change)
            if self.filters(line):
                shown.append(line)
                if emit:
                    self.emit(line)
        return shown

    def _forget(self, conv_id: str) -> None:
        self.followed.pop(conv_id, None)
        self.polled.discard(conv_id)
        for watches in (self.by_wd, self.pending):
            for wd in [wd for wd, owner in watches.items() if owner == conv_id]:
                del watches[wd]

    def _await_history(self, conv_id: str) -> None:
        """Watch a new conversation's directory until its events.jsonl appears (it is
        written just after the directory is made, so look once more after watching)."""
        try:
            wd = self.inotify.add(self.root / conv_id, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR)
        except FileNotFoundError:  # already removed
            return
        except OSError as error:  # the watch limit: the next start-up will see it
            self.warn(f"{conv_id}: cannot watch it ({error.strerror}); its changes are not shown")
            return
        self.pending[wd] = conv_id
        if os.path.exists(self.root / conv_id / conversation.EVENTS_FILE):
            self._history_appeared(wd)

    def _history_appeared(self, wd: int) -> None:
        conv_id = self.pending.pop(wd)
        self.inotify.remove(wd)
        self._start_following_new(conv_id)

    def step(self, timeout: float | None) -> None:
        """Wait up to `timeout` seconds (None: for ever) for changes, and show them."""
        if self.polled:
            timeout = POLL_FALLBACK if timeout is None else min(timeout, POLL_FALLBACK)
        poller = select.poll()
        poller.register(self.inotify.fd, select.POLLIN)
        ready = poller.poll(None if timeout is None else timeout * 1000)
        for conv_id in list(self.polled):
            self._read_new(conv_id)
        if ready:
            self._handle(self.inotify.read())

    def _handle(self, notices: list[tuple[int, int, str]]) -> None:
        for wd, mask, name in notices:
            if mask & IN_Q_OVERFLOW:  # the kernel dropped notices: look at everything
                for conv_id in list(self.followed):
                    self._read_new(conv_id)
            elif wd == self.root_wd:
                if mask & (IN_CREATE | IN_MOVED_TO) and _is_conversation_id(name):
                    self._start_following_new(name, origin="created" if mask & IN_CREATE else "moved")
                elif mask & (IN_DELETE | IN_MOVED_FROM):
                    self._forget(name)
            elif mask & IN_IGNORED:
                self.by_wd.pop(wd, None)
                self.pending.pop(wd, None)
            elif wd in self.pending:
                if name == conversation.EVENTS_FILE:
                    self._history_appeared(wd)
            elif (conv_id := self.by_wd.get(wd)) is not None:
                self._read_new(conv_id)

    def _start_following_new(self, conv_id: str, origin: str = "created") -> None:
        if self._follow(conv_id, origin=origin):
            self._read_new(conv_id)

    def close(self) -> None:
        self.inotify.close()


def run(root: Path, filters: Filters, emit: Callable[[dict[str, Any]], None], *, since: str | None = None,
        until: float | None = None) -> None:
    """Show status changes until `until` (epoch seconds; None: until interrupted)."""
    stream = EventStream(root, filters, emit, since=since)
    try:
        stream.start()
        while until is None or time.time() < until:
            stream.step(None if until is None else max(0.0, until - time.time()))
    finally:
        stream.close()


def watch_count(pid: int) -> int:
    """How many inotify watches process `pid` holds (from /proc/PID/fdinfo): one more
    than the conversations an `agent events` process follows, once it is under way."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    count += sum(line.startswith("inotify wd:") for line in info)
        except OSError:  # closed meanwhile
            continue
    return count


def _line(conv_id: str, identity: tuple[str | None, dict[str, str]], change: dict[str, Any]) -> dict[str, Any]:
    name, labels = identity
    return {"time": change["ts"], "id": conv_id, "name": name, "labels": labels, "type": "status",
            "from": change.get("from"), "status": change["to"], "reason": change.get("reason"),
            "kind": change.get("kind"), "seq": change["seq"]}


def _identity(conv_dir: Path) -> tuple[str | None, dict[str, str]]:
    """The conversation's name and labels now (None and {} where it has none)."""
    with contextlib.suppress(conversation.ConversationError, OSError):
        state = conversation.load_state(conv_dir)
        return getattr(state, "name", None), dict(getattr(state, "labels", None) or {})
    return None, {}


def _is_conversation_id(name: str) -> bool:
    return len(name) == conversation.ID_LENGTH and all(c in "0123456789abcdef" for c in name)
