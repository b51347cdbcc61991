"""A conversation as one portable JSON file: `agent export` and `agent import`.

The file holds the history (every event), the state it adds up to, messages still
waiting in the inbox and what the run printed (output.log), so that it can be kept
as a CI artifact, read with jq, or carried to another machine and resumed there. It
never holds an API key: none is ever written to a conversation, and as a second line
of defence any value of a key variable set in the exporting environment is replaced
by `[redacted]` (with a warning).

Import rebuilds the state from the history alone (the exported state is only checked
against it), records an `imported` event that gives the conversation a fresh runtime
(no pid of another machine is ever trusted), and moves the finished directory into
place in one rename, so a half-imported conversation is never seen.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from agent_proc import conversation, naming
from agent_proc.conversation import ConversationError, State, apply_event
from agent_proc.status import ACTIVE, Status

FORMAT = "agent-conversation"
FORMAT_VERSION = 1
REDACTED = "[redacted]"


class BadExport(ConversationError):
    """A file that cannot be imported (damaged, not ours, or its id is taken)."""


def export(conv_dir: Path, state: State) -> tuple[str, list[str]]:
    """The conversation as the text of one JSON document, and the names of the key
    variables whose values had to be redacted from it."""
    events, _ = conversation.read_events(conv_dir)
    try:
        output = (conv_dir / conversation.OUTPUT_FILE).read_text(errors="replace")
    except FileNotFoundError:
        output = ""
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "schema_version": conversation.SCHEMA_VERSION,
        "exported_at": conversation.now_iso(), "exported_from": socket.gethostname(), "id": state.id,
        "state": state.to_dict(), "events": events,
        "pending_messages": conversation.pending_messages(conv_dir), "output": output,
    }
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    redacted = []
    for variable, value in _key_values():
        if value in text:
            text = text.replace(value, REDACTED)
            redacted.append(variable)
    return text + "\n", redacted


def _key_values() -> list[tuple[str, str]]:
    """(variable, value) of every API key variable set here, long enough to look for."""
    from agent_proc.providers import PROVIDERS

    names = {"LLM_API_KEY", *(name for provider in PROVIDERS.values() for name in provider.key_env)}
    return [(name, os.environ[name]) for name in sorted(names) if len(os.environ.get(name, "")) >= 8]


def read(text: str, source: str) -> dict[str, Any]:
    """The exported document in `text`, checked whole; raises `BadExport` naming `source`."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise BadExport(f"{source} is not an exported conversation (not JSON: {e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BadExport(f"{source} is not an exported conversation (no \"format\": \"{FORMAT}\")")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BadExport(f"{source} has format_version {doc.get('format_version')!r}; "
                           f"this agent reads {FORMAT_VERSION}")
    if not isinstance(doc.get("schema_version"), int) or doc["schema_version"] > conversation.SCHEMA_VERSION:
        raise BadExport(f"{source} holds a conversation of schema_version {doc.get('schema_version')!r}; "
                        f"this agent reads up to {conversation.SCHEMA_VERSION}")
    conv_id, events = doc.get("id"), doc.get("events")
    if not isinstance(conv_id, str) or len(conv_id) != conversation.ID_LENGTH \
            or any(c not in "0123456789abcdef" for c in conv_id):
        raise BadExport(f"{source} is damaged: {conv_id!r} is not a conversation id")
    if not isinstance(events, list) or not events:
        raise BadExport(f"{source} is damaged: it has no history")
    for position, event in enumerate(events, 1):
        if not isinstance(event, dict) or event.get("seq") != position or not isinstance(event.get("ts"), str) \
                or not isinstance(event.get("type"), str):
            raise BadExport(f"{source} is damaged: event {position} of the history is missing or malformed")
    if events[0]["type"] != "created":
        raise BadExport(f"{source} is damaged: its history does not start with the conversation's creation")
    state = fold(conv_id, events, source)
    exported = doc.get("state")
    if not isinstance(exported, dict) or exported.get("events_seq") != state.events_seq \
            or exported.get("status") != state.status.value:
        raise BadExport(f"{source} is damaged: its state does not match its history")
    pending = doc.get("pending_messages") or []
    if not isinstance(pending, list) or not all(isinstance(m, str) for m in pending) \
            or not isinstance(doc.get("output", ""), str):
        raise BadExport(f"{source} is damaged: bad pending_messages or output")
    return doc


def fold(conv_id: str, events: list[dict[str, Any]], source: str) -> State:
    """The state the history adds up to."""
    state = State(id=conv_id)
    for event in events:
        try:
            apply_event(state, event)
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise BadExport(f"{source} is damaged: event {event.get('seq')} ({event.get('type')}): "
                               f"{type(e).__name__}: {e}") from None
    return state


def install(doc: dict[str, Any], *, workspace: str | None, new_id: bool, source: str) -> Path:
    """Make the conversation in `doc` (checked by `read`) a conversation of this home,
    working in `workspace` (default: its own, which must exist here); return its directory."""
    if workspace is None:
        workspace = fold(doc["id"], doc["events"], source).workspace
        if not os.path.isdir(workspace):
            raise BadExport(f"its workspace {workspace} does not exist here; give one with -w DIR")
    root = conversation.conversations_root()
    conversation.make_private_dir(root)
    conversation.check_home()
    original = doc["id"]
    conv_id = conversation.new_id() if new_id else original
    if (root / conv_id).exists():
        raise BadExport(f"conversation {conv_id} already exists here; "
                           "`agent import --new-id` imports it under a new id")
    building = root / f".import-{conv_id}-{os.urandom(4).hex()}"  # not an id: no command sees it
    building.mkdir(mode=0o700)
    try:
        old_umask = os.umask(0o077)
        try:
            _write(building, conv_id, doc, workspace=workspace, original=original, source=source)
        finally:
            os.umask(old_umask)
        if (root / conv_id).exists():  # taken while we were writing
            raise BadExport(f"conversation {conv_id} already exists here; "
                               "`agent import --new-id` imports it under a new id")
        name = conversation.load_state(building).name
        if name:  # its name must be free here too, and becomes its own (agent_proc.naming)
            naming.claim(name, conv_id, root.parent, root)
        try:
            os.rename(building, root / conv_id)
        except BaseException:
            naming.release(name, conv_id, root.parent)
            raise
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return root / conv_id


def _write(conv_dir: Path, conv_id: str, doc: dict[str, Any], *, workspace: str, original: str, source: str) -> None:
    (conv_dir / conversation.INBOX_DIR).mkdir(mode=0o700)
    lines = b"".join((json.dumps(e, ensure_ascii=False) + "\n").encode() for e in doc["events"])
    (conv_dir / conversation.EVENTS_FILE).write_bytes(lines)
    state = fold(conv_id, doc["events"], source)
    state.events_size = len(lines)
    conversation.write_atomic(conv_dir / conversation.STATE_FILE, json.dumps(state.to_dict(), indent=2).encode())
    (conv_dir / conversation.OUTPUT_FILE).write_text(doc.get("output") or "")
    with conversation.transaction(conv_dir) as txn:
        txn.record("imported", workspace=workspace, exported_at=doc.get("exported_at"),
                   exported_from=doc.get("exported_from"), original_id=original)
        if txn.state.status in ACTIVE:
            txn.set_status(Status.PAUSED, "imported from a copy taken while it was running", kind="imported")
        for message in doc.get("pending_messages") or []:
            txn.record("user_message", content=message, source="send")
