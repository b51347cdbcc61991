"""`--filter KEY=VALUE` and `--since`/`--until` for commands that pick conversations.

The same key given twice means either value (`status=paused --filter status=error`);
different keys must all hold, as with `docker ps --filter`. A conversation without a
name or labels (made before they existed) has name None and no labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from agent_proc.status import Status


class FilterError(ValueError):
    """A filter or a time that cannot be understood, said in one line."""


@dataclass
class Filters:
    statuses: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    labels: list[tuple[str, str | None]] = field(default_factory=list)  # (key, value or None for "any value")

    def match(self, status: str, name: str | None, labels: Mapping[str, str]) -> bool:
        return ((not self.statuses or status in self.statuses)
                and (not self.names or name in self.names)
                and all(key in labels and (value is None or labels[key] == value) for key, value in self.labels))


KEYS = ("status", "name", "label")


def parse(specs: Iterable[str]) -> Filters:
    """`["status=running", "label=team=infra"]` as `Filters`; raises `FilterError`."""
    filters = Filters()
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not value:
            raise FilterError(f"filter {spec!r} must be KEY=VALUE, with KEY one of {', '.join(KEYS)}")
        if key == "status":
            if value not in {s.value for s in Status}:
                raise FilterError(f"filter {spec!r}: status is one of {', '.join(s.value for s in Status)}")
            filters.statuses.add(value)
        elif key == "name":
            filters.names.add(value)
        elif key == "label":
            label, has_value, wanted = value.partition("=")
            filters.labels.append((label, wanted if has_value else None))
        else:
            raise FilterError(f"unknown filter {key!r} in {spec!r}; filters are {', '.join(KEYS)}")
    return filters


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A point in time: `now`, a duration ago (`90s`, `15m`, `2h`, `7d`, `1w`), or an
    ISO 8601 date or date and time (UTC unless it says otherwise)."""
    now = now or datetime.now(timezone.utc)
    if text == "now":
        return now
    if match := _DURATION.match(text):
        return now - timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{text!r} is not a time: use a duration such as 2h or 7d, or a date such as "
                          "2026-11-27 or 2026-11-27T08:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    """`moment` written like the history's timestamps, so that the two compare as text."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
