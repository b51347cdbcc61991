"""Choosing conversations (`--filter`, `--since`) and printing them (`--format`).

Filters and formats work on the summary documents of `summary.py`, so what a filter
or a template can name is exactly what `--json` prints.
"""

from __future__ import annotations

import fnmatch
import json
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from agent_proc.status import Status

FILTER_KEYS = ("status", "name", "label", "model", "since", "until")
FORMATS = ("table", "json", "jsonl")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class QueryError(ValueError):
    """A filter, time or format that cannot be understood (bad input)."""


# --------------------------------------------------------------------------- times


def iso(moment: datetime) -> str:
    """A moment in the format of the files (`2026-11-27T17:37:20.052Z`), so that times
    compare as strings."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str, now: datetime | None = None) -> str:
    """`now`, `2h`, `7d`, `30m`, `45s`, `1w` (that long ago), or a date or time
    (`2026-11-27`, `2026-11-27T14:00`, local time unless it names a zone); as an ISO
    time in UTC."""
    now = now or datetime.now(timezone.utc)
    if text.strip() == "now":
        return iso(now)
    if match := _DURATION.match(text.strip()):
        return iso(now - timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]]))
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"not a time: {text!r} (use a duration like 2h or 7d, or a date like 2026-11-27)") from None
    return iso(moment if moment.tzinfo else moment.astimezone())


# --------------------------------------------------------------------------- filters


Predicate = Callable[[dict[str, Any]], bool]


@dataclass
class Filters:
    """All of the `--filter`s given: a conversation is chosen when every one holds
    (`status=paused,error` with commas for either of several statuses). `agent
    events` follows the same rules (`supervisor/filters.py`)."""

    predicates: list[Predicate]
    statuses: set[str] | None  # the statuses the status= filters allow together, if any was given

    def __call__(self, doc: dict[str, Any]) -> bool:
        return all(p(doc) for p in self.predicates)


def _matcher(pattern: str) -> Callable[[str | None], bool]:
    """Exact, or a shell pattern (`nightly-*`) when it has wildcards."""
    if any(c in pattern for c in "*?["):
        return lambda value: value is not None and fnmatch.fnmatchcase(value, pattern)
    return lambda value: value == pattern


def _label_filter(spec: str) -> Predicate:
    key, sep, value = spec.partition("=")
    if not key:
        raise QueryError("label filter needs a key: label=KEY or label=KEY=VALUE")
    if sep:
        return lambda doc: doc["labels"].get(key) == value
    return lambda doc: key in doc["labels"]


def _status_filter(spec: str) -> tuple[Predicate, set[str]]:
    wanted = set(spec.split(","))
    known = {s.value for s in Status}
    if unknown := wanted - known:
        raise QueryError(f"unknown status {sorted(unknown)[0]!r}; statuses are {', '.join(s.value for s in Status)}")
    return (lambda doc: doc["status"] in wanted), wanted


def _time_filter(key: str, value: str, now: datetime | None) -> Predicate:
    moment = parse_time(value, now)
    if key == "since":
        return lambda doc: doc["created_at"] >= moment
    return lambda doc: doc["created_at"] < moment


def _field_filter(field: str, pattern: str) -> Predicate:
    match = _matcher(pattern)
    return lambda doc: match(doc[field])


def parse_filters(texts: Iterable[str], now: datetime | None = None) -> Filters:
    """`KEY=VALUE` filters: status= (several with commas: status=paused,error), name=,
    model= (exact or a shell pattern), label=KEY, label=KEY=VALUE, since=, until=
    (when the conversation was made)."""
    predicates: list[Predicate] = []
    statuses: set[str] | None = None
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise QueryError(f"invalid filter {text!r}: expected KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}")
        if key == "status":
            predicate, allowed = _status_filter(value)
            statuses = allowed if statuses is None else statuses & allowed
        elif key == "label":
            predicate = _label_filter(value)
        elif key in ("since", "until"):
            predicate = _time_filter(key, value, now)
        else:
            predicate = _field_filter(key, value)
        predicates.append(predicate)
    return Filters(predicates, statuses)


# --------------------------------------------------------------------------- formats


def check_format(fmt: str) -> str:
    if fmt not in FORMATS and "{" not in fmt:
        raise QueryError(f"unknown format {fmt!r}: use table, json, jsonl or a template like '{{id}} {{status}}'")
    return fmt


def render_template(template: str, doc: dict[str, Any]) -> str:
    """`template` with `{field}` replaced by the document's values (`{labels[team]}`
    for one label); a missing value is empty. `\\t` and `\\n` are a tab and a newline."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    values = {k: ("" if v is None else v) for k, v in doc.items()}
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is None:
            continue
        base = re.split(r"[.\[]", field_name, maxsplit=1)[0]
        if base not in values or "." in field_name:
            raise QueryError(f"unknown field {{{field_name}}} in --format; fields are: {', '.join(doc)}")
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError, TypeError) as error:
        raise QueryError(f"cannot fill in --format template: {type(error).__name__}: {error}") from None


def dumps(doc: Any, *, compact: bool = False) -> str:
    if compact:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(doc, indent=2, ensure_ascii=False)


def format_many(docs: list[dict[str, Any]], fmt: str, table: Callable[[], str]) -> str:
    """A listing in `fmt`: the table, a JSON array, JSON lines, or a template per line."""
    if fmt == "table":
        return table()
    if fmt == "json":
        return dumps(docs)
    if fmt == "jsonl":
        return "\n".join(dumps(d, compact=True) for d in docs)
    return "\n".join(render_template(fmt, d) for d in docs)


def format_one(doc: dict[str, Any], fmt: str, text: Callable[[], str], fields: dict[str, Any] | None = None) -> str:
    """One document in `fmt`: `text()` for table, else JSON, one JSON line, or the
    template filled in from `fields` (default: the document itself)."""
    if fmt == "table":
        return text()
    if fmt in ("json", "jsonl"):
        return dumps(doc, compact=fmt == "jsonl")
    return render_template(fmt, fields if fields is not None else doc)
