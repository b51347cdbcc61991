"""The conversation format on disk, shared by the parent and the child.

One directory per conversation under `$AGENT_HOME/conversations/<id>/`:

    events.jsonl  the history: one JSON event a line, only ever appended to
    state.json    a checkpoint of the state those events add up to, replaced atomically
    lock          the `flock` that serialises writers (readers never take it)
    inbox/        messages sent to a running conversation, not yet taken in
    output.log    what the run prints for people (progress, tracebacks)
    log.jsonl     structured logs of the child

The history is the source of truth; the state is a fold of it (`apply_event`), saved
so that readers need not replay everything. A writer appends and fsyncs the event
first, then replaces the state. A kill between the two leaves the state behind the
history, and every reader catches up by replaying the events past the checkpoint's
byte offset, so both always agree. A kill in the middle of an append leaves a torn
last line: readers ignore it and the next writer cuts it off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent_proc import naming, running
from agent_proc.status import ACTIVE, Status, check_transition

SCHEMA_VERSION = 1

STATE_FILE = "state.json"
EVENTS_FILE = "events.jsonl"
LOCK_FILE = "lock"
INBOX_DIR = "inbox"
DAMAGED_DIR = "damaged"  # inside inbox/: entries that could not be taken in
OUTPUT_FILE = "output.log"
LOG_FILE = "log.jsonl"

ID_LENGTH = 12
_ID_PREFIX = re.compile(rf"^[0-9a-f]{{1,{ID_LENGTH}}}$")


class ConversationError(Exception):
    """Something about a conversation that a user must be told, in one line."""


class NotFound(ConversationError):
    pass


class CorruptFile(ConversationError):
    pass


class UnsafePath(ConversationError):
    """A file or directory that another user could have planted or could change."""


class LockTimeout(ConversationError):
    """The conversation's lock was held by someone else for longer than `LOCK_WAIT`."""


# How long a command waits for a conversation's lock before it gives up and says who
# holds it. Transactions take milliseconds; a holder that keeps it longer is stuck.
LOCK_WAIT = 5.0


def agent_home() -> Path:
    """Where all user state lives: `$AGENT_HOME`, else `$XDG_STATE_HOME/agent`, else ~/.local/state/agent."""
    if home := os.environ.get("AGENT_HOME"):
        return Path(home).expanduser().absolute()
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home).expanduser().absolute() / "agent"


def conversations_root(home: Path | None = None) -> Path:
    return (home or agent_home()) / "conversations"


# --------------------------------------------------------------------------- safe files


def check_private_dir(path: Path, *, follow: bool = False) -> None:
    """Refuse a directory another user could change: one they own, one group or others
    can write, or (unless `follow`) a symbolic link. A missing one is fine."""
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"{path} is a symbolic link, which agent does not follow here; remove it")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{path} is not a directory; remove it")
    if info.st_uid != os.geteuid():
        raise UnsafePath(f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}): "
                         f"chown it to yourself, or set AGENT_HOME to a directory of your own")
    if info.st_mode & 0o022:
        raise UnsafePath(f"{path} can be written by group or others (mode {stat.S_IMODE(info.st_mode):o}): "
                         f"fix it with `chmod go-w {path}`")


def check_home(home: Path | None = None) -> Path:
    """The conversations directory, once `$AGENT_HOME` and it are known to be safe."""
    home = home or agent_home()
    check_private_dir(home, follow=True)  # the home itself may be a link the user made
    root = conversations_root(home)
    check_private_dir(root)
    return root


def make_private_dir(path: Path) -> None:
    """Create `path` and its missing parents, each 0700 whatever the umask."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
            os.chmod(directory, 0o700)  # the umask may have taken bits away


def open_fd(path: Path, flags: int, mode: int = 0o600) -> int:
    """`os.open` that never follows a symbolic link at `path`: a link planted in a
    conversation must not redirect a read, a write or a lock. A file it creates gets
    `mode` whatever the umask."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafePath(f"{path} is a symbolic link, which agent never follows; remove it") from None
        raise
    if flags & os.O_CREAT:
        with contextlib.suppress(OSError):
            os.fchmod(fd, mode)
    return fd


def read_file(path: Path, offset: int = 0) -> bytes:
    """The bytes of `path` from `offset` on, without following a symbolic link."""
    with os.fdopen(open_fd(path, os.O_RDONLY), "rb") as f:
        if offset:
            f.seek(offset)
        return f.read()


def read_private_file(path: Path) -> bytes:
    """A file of `$AGENT_HOME` that sets how agent behaves (prices.json, config.toml):
    read only if its directory and itself are ours and no one else can write them,
    never through a symbolic link. `UnsafePath` says what to fix."""
    check_private_dir(path.parent, follow=True)
    with os.fdopen(open_fd(path, os.O_RDONLY), "rb") as f:
        info = os.fstat(f.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise UnsafePath(f"{path} belongs to uid {info.st_uid} with mode {stat.S_IMODE(info.st_mode):o}: it must "
                             f"be yours and not writable by group or others (chown it, `chmod go-w {path}`)")
        return f.read()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- ids


def new_id() -> str:
    return os.urandom(ID_LENGTH // 2).hex()


def resolve(id_or_prefix: str, home: Path | None = None) -> Path:
    """The directory of the conversation `id_or_prefix` names: a whole id, else a
    conversation's name, else the one id that starts with it (as docker does).

    An id prefix must be lower-case hex and a name has no '/', so neither can point
    outside the home.
    """
    root = check_home(home)
    whole_id = len(id_or_prefix) == ID_LENGTH and _ID_PREFIX.match(id_or_prefix)
    if not whole_id and (owner := naming.owner(id_or_prefix, home or agent_home())) and (root / owner).is_dir():
        return root / owner
    if not _ID_PREFIX.match(id_or_prefix):
        raise NotFound(f"not a conversation id or name: {id_or_prefix!r} (ids are hex, like 3f9a1c2b7d40)")
    try:
        names = [n for n in os.listdir(root) if n.startswith(id_or_prefix) and len(n) == ID_LENGTH]
    except FileNotFoundError:
        names = []
    if not names:
        raise NotFound(f"no conversation matches {id_or_prefix!r}")
    if len(names) > 1:
        shown = ", ".join(sorted(names)[:5])
        raise NotFound(f"{id_or_prefix!r} is ambiguous: it matches {len(names)} conversations ({shown})")
    return root / names[0]


def list_ids(home: Path | None = None) -> list[str]:
    check_home(home)
    try:
        names = os.listdir(conversations_root(home))
    except FileNotFoundError:
        return []
    return [n for n in sorted(names) if len(n) == ID_LENGTH and _ID_PREFIX.match(n)]


def list_dirs(home: Path | None = None) -> list[Path]:
    root = conversations_root(home)
    return [root / n for n in list_ids(home)]


# --------------------------------------------------------------------------- state


@dataclass
class Runtime:
    """The process currently (or last) running the conversation."""

    pid: int | None = None
    create_time: float | None = None  # psutil's create time (wall clock), for people
    start_ticks: int | None = None  # start time in clock ticks since boot: with the pid, the process's identity
    marker: str | None = None  # AGENT_RUN_MARKER in the child's environment
    supervisor_pid: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    exit_code: int | None = None
    stop: dict[str, Any] | None = None  # how the last run was stopped from outside, if it was
    host: dict[str, Any] | None = None  # where `pid` lives: hostname, boot_id, pid_ns (see environment.host_identity)
    backend: str = "local"  # what started the run: "local", or a scheduler such as "slurm"
    job: dict[str, Any] | None = None  # the scheduler's job: id, cluster, args, submitted_at, node, started_at

    @property
    def awaiting_process(self) -> bool:
        """A job was submitted and has not ended, but no process has taken the run yet."""
        return self.job is not None and self.pid is None and self.ended_at is None


ON_TIMEOUT_CHOICES = ("retry", "error", "pause")


@dataclass
class Settings:
    """How a run behaves; chosen at `agent run`, changeable at `agent resume`."""

    max_iterations: int = 50  # model calls per start of the child
    tool_timeout: float = 600.0  # seconds a terminal command may run
    stream: bool = True  # stream model output (SSE)
    llm_timeout: float | None = None  # hard wall-clock limit on one model call, enforced from outside
    idle_timeout: float | None = None  # no byte from the server for this long ends the call
    on_timeout: str = "retry"  # what a timed-out call does next: one of ON_TIMEOUT_CHOICES
    run_timeout: float | None = None  # wall-clock limit on one start of the run, enforced from outside
    max_cost: float | None = None  # USD; the run stops before a call that would exceed it
    max_output_tokens: int | None = None  # the longest reply asked of the model; None: the wire's default
    reasoning_effort: str | None = None  # one of providers.EFFORT_LEVELS; None: the model's default
    thinking_budget: int | None = None  # Anthropic: thinking tokens; None: the default for the effort level
    api: str | None = None  # OpenAI format: "chat" or "responses"; None: the model's default (reasoning.choose_api)
    sandbox: str = "workspace"  # where tools run: "workspace", "read-only" or "off" (agent_proc/sandbox.py)
    network: bool = True  # whether sandboxed tools reach the network (off: loopback only)
    writable: list[str] = field(default_factory=list)  # more places sandboxed tools may write to


@dataclass
class Metrics:
    iterations: int = 0
    model_calls: int = 0  # replies the model gave whole (cut off by the output limit included)
    http_attempts: int = 0  # requests sent to the model API, failed and retried ones included
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    accumulated_cost: float | None = None  # USD; None means unknown, never 0
    cost_estimated: bool = False  # part of the cost is estimated (a call cut off before its usage came)


@dataclass
class State:
    id: str
    name: str | None = None  # unique in the home; see agent_proc.naming
    labels: dict[str, str] = field(default_factory=dict)
    prompt: str = ""  # the first line of the first prompt, for listings (at most PROMPT_PREVIEW characters)
    status: Status = Status.IDLE
    status_reason: str | None = None
    status_kind: str | None = None  # machine-readable cause of `error` or `paused`: "timeout", "budget", ...
    model: str = ""
    base_url: str | None = None
    workspace: str = ""
    settings: Settings = field(default_factory=Settings)
    created_at: str = ""
    updated_at: str = ""
    final_answer: str | None = None
    pause_requested: bool = False
    inbox_taken: int = 0  # sequence number of the last inbox message taken into the history
    start: dict[str, Any] | None = None  # the last start: {"token", "starter": {"pid", "start_ticks", "command"}}
    current_call: dict[str, Any] | None = None  # the model call in flight: {"n", "attempt", "started"} (epoch s)
    metrics: Metrics = field(default_factory=Metrics)
    # Model calls totalled per UTC day and model ("2026-11-27 openai/gpt-4o"), for cost reports.
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    runtime: Runtime = field(default_factory=Runtime)
    events_seq: int = 0  # seq of the last event folded into this state
    events_size: int = 0  # byte offset in events.jsonl just after that event
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["status"] = self.status.value
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> State:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        values["status"] = Status(values.get("status", "idle"))
        values["metrics"] = _build(Metrics, values.get("metrics") or {})
        values["settings"] = _build(Settings, values.get("settings") or {})
        values["runtime"] = _build(Runtime, values.get("runtime") or {})
        if "inbox_taken" not in doc and doc.get("inbox_cursor"):  # written before inbox names were numbers
            values["inbox_taken"] = inbox_number(doc["inbox_cursor"]) or 0
        return cls(**values)


def _build(kind: type, doc: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in doc.items() if k in known})


PROMPT_PREVIEW = 200
_TOKEN_KINDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")


def _preview(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:PROMPT_PREVIEW]


def _add_usage(state: State, event: dict[str, Any], usage: dict[str, Any]) -> None:
    """Count one model call in its day's and model's bucket of `state.usage`."""
    key = f"{event['ts'][:10]} {event.get('model') or state.model}"
    bucket = state.usage.setdefault(key, {"calls": 0, **dict.fromkeys(_TOKEN_KINDS, 0), "cost_usd": 0.0,
                                          "estimated_usd": 0.0, "unpriced_calls": 0})
    bucket["calls"] += 1
    for tokens in _TOKEN_KINDS:
        bucket[tokens] += int(usage.get(tokens) or 0)
    if (cost := event.get("cost")) is None:
        bucket["unpriced_calls"] += 1
    else:
        bucket["cost_usd"] += cost
        if event.get("cost_estimated"):
            bucket["estimated_usd"] += cost


def apply_event(state: State, event: dict[str, Any]) -> None:
    """Fold one event into the state. The only place that derives state from history."""
    kind = event["type"]
    state.events_seq = event["seq"]
    state.updated_at = event["ts"]
    if kind == "created":
        state.model = event["model"]
        state.base_url = event.get("base_url")
        state.workspace = event["workspace"]
        state.settings = _build(Settings, event.get("settings") or {})
        state.created_at = event["ts"]
        state.name = event.get("name")
        state.labels = dict(event.get("labels") or {})
    elif kind == "labels_changed":
        state.labels = {k: v for k, v in {**state.labels, **event.get("set", {})}.items()
                        if k not in event.get("removed", [])}
    elif kind == "settings_changed":
        state.settings = _build(Settings, {**dataclasses.asdict(state.settings), **event["settings"]})
    elif kind == "model_changed":
        state.model = event["model"]
        state.base_url = event.get("base_url")
    elif kind == "imported":  # a copy from elsewhere: no process of another machine is ours
        state.runtime = Runtime()
        state.workspace = event["workspace"]
        state.current_call = None
        state.pause_requested = False
    elif kind == "status":
        state.status = Status(event["to"])
        state.status_reason = event.get("reason")
        state.status_kind = event.get("kind")
        state.pause_requested = False
        state.current_call = None
        if event["to"] == Status.FINISHED.value:
            state.final_answer = event.get("answer")
        if event["to"] == Status.RUNNING.value:
            state.final_answer = None
        if event["to"] == Status.STARTING.value:
            state.start = {"token": event["token"], "starter": event["starter"]}
    elif kind == "status_explained":
        state.status_reason = event.get("reason")
        state.status_kind = event.get("kind")
    elif kind == "submitted":  # a new start, handed to a scheduler
        state.runtime = Runtime(backend=event["backend"], job={**event["job"], "submitted_at": event["ts"]})
    elif kind == "job_started":
        if state.runtime.job is not None:
            known = {k: event[k] for k in ("node", "cluster", "host") if event.get(k)}
            state.runtime.job.update(known, started_at=event["ts"])
    elif kind == "started":
        previous = state.runtime
        state.runtime = Runtime(
            pid=event["pid"],
            create_time=event["create_time"],
            start_ticks=event.get("start_ticks"),
            marker=event.get("marker"),
            supervisor_pid=event.get("supervisor_pid"),
            started_at=event["ts"],
            # A hostname alone, as recorded before the boot id and PID namespace were kept.
            host={"hostname": event["host"]} if isinstance(event.get("host"), str) else event.get("host"),
        )
        if previous.awaiting_process:  # the process of a submitted job: the run keeps its job
            state.runtime.backend, state.runtime.job = previous.backend, previous.job
    elif kind == "exited":
        state.runtime.ended_at = event["ts"]
        state.runtime.exit_code = event.get("exit_code")
    elif kind == "stopped":
        state.runtime.stop = {k: v for k, v in event.items() if k not in ("seq", "ts", "type")}
    elif kind == "pause_requested":
        state.pause_requested = True
    elif kind == "user_message":
        number = event.get("inbox_seq")
        if number is None and event.get("inbox_id"):  # written before inbox names were numbers
            number = inbox_number(event["inbox_id"])
        if number is not None:
            state.inbox_taken = max(state.inbox_taken, number)
        if not state.prompt and event.get("source") == "prompt":
            state.prompt = _preview(event.get("content") or "")
    elif kind == "model_call_started":
        state.current_call = {"n": event["n"], "attempt": event["attempt"], "started": event["started"]}
        state.metrics.http_attempts += 1
    elif kind == "model_attempt_failed":
        state.current_call = None
    elif kind == "model_message":
        state.current_call = None
        if not event.get("partial"):
            state.metrics.model_calls += 1
            state.metrics.iterations += 1
        usage = event.get("usage") or {}
        for tokens in _TOKEN_KINDS:
            setattr(state.metrics, tokens, getattr(state.metrics, tokens) + int(usage.get(tokens) or 0))
        if (cost := event.get("cost")) is not None:
            state.metrics.accumulated_cost = (state.metrics.accumulated_cost or 0.0) + cost
            state.metrics.cost_estimated |= bool(event.get("cost_estimated"))
        _add_usage(state, event, usage)
    elif kind == "tool_result":
        state.metrics.tool_calls += 1


# --------------------------------------------------------------------------- files


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a reader sees the old or the new file, whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The new file is in place; failing to make its name durable must not undo the write.
    with contextlib.suppress(OSError):
        _fsync_dir(path.parent)


def _read_checkpoint(conv_dir: Path) -> State:
    check_private_dir(conv_dir)
    path = conv_dir / STATE_FILE
    try:
        raw = read_file(path)
    except FileNotFoundError:
        raise CorruptFile(f"{path} is missing") from None
    try:
        return State.from_dict(json.loads(raw))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise CorruptFile(f"{path} is not a valid state document: {e}") from None


@dataclass
class Tail:
    """Events found in events.jsonl past the checkpoint, and where the good part ends."""

    events: list[dict[str, Any]]
    end: int  # byte offset just after the last complete, parseable event
    torn: bool  # whether bytes after `end` had to be ignored


def _read_tail(events_path: Path, offset: int) -> Tail:
    """The events from byte `offset` on.

    Only the last line may be incomplete (a writer killed mid-append): it is reported
    as torn. A bad line anywhere else was not made by a crash, so it is an error that
    names the file; nothing after it is ever thrown away.
    """
    try:
        data = read_file(events_path, offset)
    except FileNotFoundError:
        return Tail([], offset, False)
    *complete, rest = data.split(b"\n")
    events: list[dict[str, Any]] = []
    end = offset
    for line in complete:
        try:
            event = json.loads(line)
            if not isinstance(event, dict) or not isinstance(event.get("seq"), int) or "type" not in event:
                raise ValueError("not an event")
        except ValueError as e:
            raise CorruptFile(f"{events_path} has a damaged line at byte {end}: {e}") from None
        events.append(event)
        end += len(line) + 1
    return Tail(events, end, torn=rest != b"")


def _fold(state: State, event: dict[str, Any], conv_dir: Path) -> None:
    """`apply_event`, with an event that lacks what its type needs reported as damage."""
    try:
        apply_event(state, event)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise CorruptFile(f"{conv_dir / EVENTS_FILE} has a damaged event (seq {event.get('seq')}): "
                          f"{type(e).__name__}: {e}") from None


def load_state(conv_dir: Path) -> State:
    """The conversation's current state: the checkpoint plus any events written after it."""
    state = _read_checkpoint(conv_dir)
    for event in _read_tail(conv_dir / EVENTS_FILE, state.events_size).events:
        _fold(state, event, conv_dir)
    return state


def read_events(conv_dir: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete events from byte `offset` on, and the offset to continue from."""
    tail = _read_tail(conv_dir / EVENTS_FILE, offset)
    return tail.events, tail.end


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM, SIGUSR1 and SIGALRM until the block is done, so no write is torn by them.

    Only the main thread receives Python signal handlers, so elsewhere this does nothing.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGALRM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Transaction:
    """Exclusive write access to one conversation, obtained from `transaction()`.

    Events recorded in a transaction are kept in memory and written with a single
    append at commit, so a reader sees all of a transaction or none of it (at worst
    a torn last line, which readers skip).
    """

    def __init__(self, conv_dir: Path) -> None:
        self.dir = conv_dir
        self.state = _read_checkpoint(conv_dir)
        tail = _read_tail(conv_dir / EVENTS_FILE, self.state.events_size)
        for event in tail.events:
            _fold(self.state, event, conv_dir)
        if tail.torn:
            # A writer died mid-line; nobody acknowledged those bytes, so they go.
            fd = open_fd(conv_dir / EVENTS_FILE, os.O_WRONLY)
            try:
                os.ftruncate(fd, tail.end)
            finally:
                os.close(fd)
        self.state.events_size = tail.end
        self._dirty = bool(tail.events) or tail.torn
        self.recorded: list[dict[str, Any]] = []  # this transaction's events, in order
        self._lines: list[bytes] = []
        self._after_commit: list[Callable[[], None]] = []

    def record(self, event_type: str, /, **data: Any) -> dict[str, Any]:
        """Add one event to the history (written at commit) and fold it into the state."""
        event = {"seq": self.state.events_seq + 1, "ts": now_iso(), "type": event_type, **data}
        try:
            line = (json.dumps(event, ensure_ascii=False, default=str) + "\n").encode()
        except UnicodeEncodeError:  # a lone surrogate (a server's "\\ud800"): kept exactly, as an escape
            line = (json.dumps(event, default=str) + "\n").encode()
        apply_event(self.state, event)
        self.state.events_size += len(line)
        self.recorded.append(event)
        self._lines.append(line)
        self._dirty = True
        return event

    def set_status(self, target: Status, reason: str | None = None, **data: Any) -> dict[str, Any]:
        """Move to `target` if the life cycle allows it; raises `IllegalTransition` if not."""
        current = self.state.status
        check_transition(current, target)
        return self.record("status", **{"from": current.value, "to": target.value, "reason": reason, **data})

    def after_commit(self, action: Callable[[], None]) -> None:
        """Do `action` once the transaction is durable (e.g. remove what it took in)."""
        self._after_commit.append(action)

    def commit(self) -> None:
        """Append the events durably, then checkpoint the state after them.

        The home's set of running conversations (`agent_proc.running`) gains this one
        before it is recorded running, and loses it once it is recorded stopped.
        """
        is_running = self.state.status in ACTIVE  # a queued or starting run is listed too
        if is_running:
            running.mark(self.dir)
        path = self.dir / EVENTS_FILE
        fd = open_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                if self._lines:
                    data = b"".join(self._lines)
                    if os.write(fd, data) != len(data):  # a full disk can cut a write short
                        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (short write)", str(path))
                    os.fsync(fd)
                if self._dirty:
                    write_atomic(self.dir / STATE_FILE, json.dumps(self.state.to_dict(), indent=2).encode())
            except BaseException:
                os.ftruncate(fd, start)  # all of the transaction, or nothing of it
                raise
        finally:
            os.close(fd)
        self._dirty = False
        if not is_running:
            running.unmark(self.dir)
        for action in self._after_commit:
            action()


@contextlib.contextmanager
def transaction(conv_dir: Path, *, give_up: Callable[[], bool] | None = None) -> Iterator[Transaction]:
    """Lock the conversation, yield a `Transaction`, and commit it at the end.

    The lock is waited for at most `LOCK_WAIT` seconds (then `LockTimeout` names the
    holder), with signals deliverable, so Ctrl+C ends the wait; `give_up()` turning
    true ends it too. Once it is held, SIGINT, SIGTERM and SIGUSR1 wait until the block
    is over, so an interrupted run never leaves half a transaction behind. A block that
    raises writes nothing.
    """
    if not conv_dir.is_dir():
        raise NotFound(f"conversation {conv_dir.name} no longer exists")
    fd = open_fd(conv_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        wait_for_lock(fd, f"conversation {conv_dir.name}", give_up=give_up)
        with signals_deferred():
            txn = Transaction(conv_dir)
            yield txn
            txn.commit()
    finally:
        os.close(fd)


def wait_for_lock(fd: int, what: str, *, give_up: Callable[[], bool] | None = None,
                  timeout: float = LOCK_WAIT) -> None:
    """Take the `flock` on `fd`, polling, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if give_up is not None and give_up():
            raise LockTimeout(f"gave up waiting for the lock of {what}{_holder_text(fd)}")
        if time.monotonic() >= deadline:
            raise LockTimeout(f"{what} has been locked for more than {timeout:g} s{_holder_text(fd)}; "
                              "try again once it is free")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _holder_text(fd: int) -> str:
    """Who holds the `flock` on `fd`, as ` by pid N (command, stopped)`, from /proc/locks."""
    info = os.fstat(fd)
    where = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks") as locks:
            lines = [line.split() for line in locks]
    except OSError:
        return ""
    pids = [int(f[4]) for f in lines if len(f) > 5 and f[1] == "FLOCK" and f[5] == where and f[4].isdigit()]
    if not pids:
        return ""
    try:
        with open(f"/proc/{pids[0]}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
        with open(f"/proc/{pids[0]}/stat") as f:
            stopped = f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except OSError:
        return f" by pid {pids[0]}"
    return f" by pid {pids[0]} ({command}{', stopped' if stopped else ''})"


def create(
    *,
    model: str,
    workspace: str,
    base_url: str | None,
    prompt: str,
    settings: Settings | None = None,
    name: str | None = None,
    labels: dict[str, str] | None = None,
    home: Path | None = None,
) -> Path:
    """Make a new, idle conversation whose history starts with `prompt`; return its directory.

    It is built under a hidden name and renamed into place when complete, so a failure
    part-way leaves nothing behind that `ps` would list. A `name` already taken raises
    `naming.NameTaken`, and nothing is made.
    """
    home = home or agent_home()
    root = conversations_root(home)
    make_private_dir(root)
    check_home(home)
    building = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
    try:
        conv_id = new_id()
        os.mkdir(building / INBOX_DIR, 0o700)
        write_atomic(building / STATE_FILE, json.dumps(State(id=conv_id).to_dict()).encode())
        os.chmod(building / STATE_FILE, 0o600)
        with transaction(building) as txn:
            txn.record(
                "created", model=model, workspace=workspace, base_url=base_url,
                settings=dataclasses.asdict(settings or Settings()), name=name, labels=labels or {},
            )
            txn.record("user_message", content=prompt, source="prompt")
        if os.path.lexists(root / conv_id):  # pragma: no cover - 48 random bits colliding
            raise ConversationError("could not allocate a conversation id; try again")
        os.rename(building, root / conv_id)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if name is not None:  # claimed once the conversation exists, which is what makes a claim hold
        try:
            naming.claim(name, conv_id, home, root)
        except BaseException:
            shutil.rmtree(root / conv_id, ignore_errors=True)
            raise
    return root / conv_id


# --------------------------------------------------------------------------- inbox


def inbox_number(name: str) -> int | None:
    """The sequence number an inbox file's name starts with (the send time in ns for files
    written before names were sequence numbers; those are still taken in, in order)."""
    head = name.removesuffix(".json").split("-")[0]
    return int(head) if head.isdigit() else None


def _inbox_entries(conv_dir: Path) -> list[tuple[int | None, str]]:
    """The inbox's files as (number, name), in the order they were sent; a name without
    a number (not made by agent) sorts first, to be moved aside."""
    check_private_dir(conv_dir / INBOX_DIR)  # a linked inbox would have us read and unlink elsewhere
    try:
        names = [n for n in os.listdir(conv_dir / INBOX_DIR) if n.endswith(".json") and not n.startswith(".")]
    except FileNotFoundError:
        return []
    entries = [(inbox_number(n), n) for n in names]
    return sorted(entries, key=lambda e: (e[0] is not None, e[0] or 0, e[1]))


def post_message(conv_dir: Path, content: str) -> str:
    """Give a user message to the conversation: into the history if no run is taking
    messages now, else into the inbox for the running (or starting) child to take in.
    Returns "history" or "inbox". A damaged history is refused (`CorruptFile`) rather
    than added to.

    Inbox files are named by a sequence number allocated under the lock, so their
    order, and which are already taken, never depend on the wall clock.
    """
    read_events(conv_dir)
    with transaction(conv_dir) as txn:
        if txn.state.status not in ACTIVE:
            txn.record("user_message", content=content, source="send")
            return "history"
        numbers = [n for n, _ in _inbox_entries(conv_dir) if n is not None]
        number = max([txn.state.inbox_taken, *numbers]) + 1
        write_atomic(conv_dir / INBOX_DIR / f"{number:020d}.json", json.dumps({"content": content}).encode())
        return "inbox"


def _read_message(path: Path) -> tuple[str | None, str | None]:
    """An inbox file's message, or what is wrong with it."""
    try:
        doc = json.loads(read_file(path))
    except (OSError, ValueError, ConversationError) as error:
        return None, f"cannot be read ({error})"
    content = doc.get("content") if isinstance(doc, dict) else None
    if not isinstance(content, str):
        return None, "has no text message"
    try:
        content.encode()
    except UnicodeEncodeError:
        return None, "is not valid UTF-8 text"
    return content, None


def take_inbox(txn: Transaction) -> list[dict[str, Any]]:
    """Move inbox messages into the history, in the order they were sent.

    Called under the lock. A file already taken (its number is not past `inbox_taken`)
    is a leftover of a kill between recording and unlinking, and is only removed. A
    damaged one is moved to inbox/damaged/ with an `error` event, so it never blocks
    the run or a resume.
    """
    inbox = txn.dir / INBOX_DIR
    taken = []
    for number, name in _inbox_entries(txn.dir):
        path = inbox / name
        if number is not None and number <= txn.state.inbox_taken:
            txn.after_commit(lambda path=path: path.unlink(missing_ok=True))
            continue
        content, problem = _read_message(path) if number is not None else (None, "is not named by agent")
        if problem:
            txn.record("error", kind="inbox", message=f"inbox entry {name} {problem}; moved to {INBOX_DIR}/"
                                                      f"{DAMAGED_DIR}/{name}")
            txn.after_commit(lambda path=path: _move_aside(path))
            continue
        taken.append(txn.record("user_message", content=content, source="send", inbox_seq=number))
        # Removed only once the message is safely in the history; a file that outlives a
        # crash is behind `inbox_taken` and is only removed next time.
        txn.after_commit(lambda path=path: path.unlink(missing_ok=True))
    return taken


def _move_aside(path: Path) -> None:
    damaged = path.parent / DAMAGED_DIR
    with contextlib.suppress(FileExistsError):
        os.mkdir(damaged, 0o700)
    check_private_dir(damaged)
    os.replace(path, damaged / path.name)


def pending_messages(conv_dir: Path) -> list[str]:
    """Messages waiting in the inbox (for display)."""
    out = []
    for number, name in _inbox_entries(conv_dir):
        content, _ = _read_message(conv_dir / INBOX_DIR / name) if number is not None else (None, None)
        if content is not None:
            out.append(content)
    return out
