"""Names and labels of conversations: what is a valid one, and who owns a name.

A name is unique among all the conversations of a home. Ownership is a file,
`$AGENT_HOME/names/<name>`, holding the id; it is created, replaced and removed only
under the home's `names.lock`, so two commands can never both get the same name. The
conversation's own history (its `created` event) records the name too; the file
is how a name is found and kept unique.

Labels are `KEY=VALUE` pairs, for grouping (`team=infra`, `job=nightly`); many
conversations may share them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

NAMES_DIR = "names"
NAMES_LOCK = "names.lock"

NAME_MAX = 64
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
LABEL_KEY_MAX = 63
LABEL_VALUE_MAX = 256
_LABEL_KEY = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_./-]*$")
_ID = re.compile(r"^[0-9a-f]{12}$")  # what a names/ file holds; anything else is ignored


class BadName(ValueError):
    """A name or label that is not allowed (reported as bad input)."""


class NameTaken(BadName):
    pass


def check_name(name: str) -> str:
    if len(name) > NAME_MAX or not _NAME.match(name):
        raise BadName(f"invalid name {name!r}: up to {NAME_MAX} characters, letters, digits, '_', '.' or '-', "
                      "starting with a letter or digit")
    return name


def _check_key(key: str) -> str:
    if len(key) > LABEL_KEY_MAX or not _LABEL_KEY.match(key):
        raise BadName(f"invalid label key {key!r}: up to {LABEL_KEY_MAX} characters, letters, digits, "
                      "'_', '.', '/' or '-', starting with a letter or digit")
    return key


def _check_value(key: str, value: str) -> str:
    if len(value) > LABEL_VALUE_MAX or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise BadName(f"invalid label value for {key!r}: at most {LABEL_VALUE_MAX} characters, "
                      "no control characters")
    return value


def parse_label(text: str) -> tuple[str, str]:
    """`KEY=VALUE` as a pair; the value may be empty and may contain '='."""
    key, sep, value = text.partition("=")
    if not sep:
        raise BadName(f"invalid label {text!r}: expected KEY=VALUE")
    return _check_key(key), _check_value(key, value)


def parse_labels(texts: tuple[str, ...] | list[str]) -> dict[str, str]:
    return dict(parse_label(t) for t in texts)


def parse_label_changes(texts: tuple[str, ...] | list[str]) -> tuple[dict[str, str], list[str]]:
    """`KEY=VALUE` (set) and `KEY-` (remove) arguments, as (to set, to remove)."""
    to_set: dict[str, str] = {}
    to_remove: list[str] = []
    for text in texts:
        if "=" not in text and text.endswith("-"):
            to_remove.append(_check_key(text[:-1]))
        else:
            key, value = parse_label(text)
            to_set[key] = value
    if both := set(to_set) & set(to_remove):
        raise BadName(f"label {sorted(both)[0]!r} is both set and removed")
    return to_set, to_remove


# --------------------------------------------------------------------------- name ownership


@contextlib.contextmanager
def _names_locked(home: Path) -> Iterator[Path]:
    """Hold the home's names.lock; yield the names directory."""
    names = home / NAMES_DIR
    names.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(home / NAMES_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield names
    finally:
        os.close(fd)


def owner(name: str, home: Path) -> str | None:
    """The id of the conversation called `name`, if any (readers take no lock)."""
    if not _NAME.match(name) or len(name) > NAME_MAX:
        return None
    try:
        held = (home / NAMES_DIR / name).read_text().strip()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None
    return held if _ID.match(held) else None


def claim(name: str, conv_id: str, home: Path, conversations: Path) -> None:
    """Make `name` belong to `conv_id`, or raise `NameTaken`.

    A name whose conversation no longer exists (its directory removed by hand) is
    free again.
    """
    check_name(name)
    with _names_locked(home) as names:
        path = names / name
        holder = owner(name, home)
        if holder and (conversations / holder).is_dir():
            raise NameTaken(f"the name {name!r} is taken by conversation {holder}")
        fd = os.open(path.with_name(f".{name}.tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, conv_id.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(path.with_name(f".{name}.tmp"), path)


def release(name: str | None, conv_id: str, home: Path) -> None:
    """Free `name` if it still belongs to `conv_id` (a removed conversation)."""
    if not name:
        return
    with _names_locked(home) as names:
        if owner(name, home) == conv_id:
            (names / name).unlink(missing_ok=True)
