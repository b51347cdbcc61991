"""`--filter KEY=VALUE` and times (`--since`, `--until`) for `agent events`.

The same rules as `docker ps --filter`, and as the listings' filters: every filter
given must hold (`status=paused,error` with commas for either of several statuses);
`name=` is exact, or a shell pattern (`nightly-*`) when it has wildcards;
`label=KEY` wants the label, `label=KEY=VALUE` that value. A filter works on a
document with `status`, `name` and `labels` (an event line, or a summary), so a
conversation without a name (made before names existed) has name None and no labels.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from agent_proc.status import Status

KEYS = ("status", "name", "label")

Predicate = Callable[[dict[str, Any]], bool]


class FilterError(ValueError):
    """A filter or a time that cannot be understood, said in one line."""


@dataclass
class Filters:
    """All the filters given: a document passes when every one holds."""

    predicates: list[Predicate]

    def __call__(self, doc: dict[str, Any]) -> bool:
        return all(predicate(doc) for predicate in self.predicates)


def _status(value: str) -> Predicate:
    wanted = set(value.split(","))
    if unknown := wanted - {s.value for s in Status}:
        raise FilterError(f"unknown status {sorted(unknown)[0]!r}; statuses are {', '.join(s.value for s in Status)}")
    return lambda doc: doc["status"] in wanted


def _name(pattern: str) -> Predicate:
    if any(c in pattern for c in "*?["):
        return lambda doc: doc["name"] is not None and fnmatch.fnmatchcase(doc["name"], pattern)
    return lambda doc: doc["name"] == pattern


def _label(value: str) -> Predicate:
    key, has_value, wanted = value.partition("=")
    if not key:
        raise FilterError("a label filter needs a key: label=KEY or label=KEY=VALUE")
    if has_value:
        return lambda doc: doc["labels"].get(key) == wanted
    return lambda doc: key in doc["labels"]


def parse(specs: Iterable[str]) -> Filters:
    """`["status=running", "label=team=infra"]` as `Filters`; raises `FilterError`."""
    makers = {"status": _status, "name": _name, "label": _label}
    predicates = []
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or key not in makers:
            raise FilterError(f"invalid filter {spec!r}: expected KEY=VALUE with KEY one of {', '.join(KEYS)}")
        predicates.append(makers[key](value))
    return Filters(predicates)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def iso(moment: datetime) -> str:
    """`moment` written like the history's timestamps (`2026-11-27T17:37:20.052Z`), so
    that the two compare as text."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str, now: datetime | None = None) -> str:
    """`now`, a duration ago (`90s`, `15m`, `2h`, `7d`, `1w`), or a date or time
    (`2026-11-27`, `2026-11-27T14:00`, local time unless it names a zone); as an ISO
    time in UTC."""
    now = now or datetime.now(timezone.utc)
    text = text.strip()
    if text == "now":
        return iso(now)
    if match := _DURATION.match(text):
        return iso(now - timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]]))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"not a time: {text!r} (use a duration like 2h or 7d, or a date like 2026-11-27)") from None
    return iso(moment if moment.tzinfo else moment.astimezone())


def epoch(stamp: str) -> float:
    """An ISO time from `parse_time` as seconds since the epoch."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
