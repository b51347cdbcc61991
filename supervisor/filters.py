"""`--filter KEY=VALUE` and times (`--since`, `--until`) for `agent events`.

The listings' filters (`supervisor.query`), limited to what an event line carries:
`status=` (the new status; `status=paused,error` for either), `name=` (exact, or a
shell pattern like `nightly-*`), `label=KEY`, `label=KEY=VALUE`; every filter given
must hold. A filter works on a document with `status`, `name` and `labels` (an event
line, or a summary), so a conversation without a name (made before names existed)
has name None and no labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from supervisor import query
from supervisor.query import Filters, iso, parse_time
from supervisor.query import QueryError as FilterError

KEYS = ("status", "name", "label")

__all__ = ["KEYS", "FilterError", "Filters", "epoch", "iso", "parse", "parse_time"]


def parse(specs: Iterable[str]) -> Filters:
    """`["status=running", "label=team=infra"]` as `Filters`; raises `FilterError`."""
    specs = list(specs)
    for spec in specs:
        key, sep, _ = spec.partition("=")
        if not sep or key not in KEYS:
            raise FilterError(f"invalid filter {spec!r}: expected KEY=VALUE with KEY one of {', '.join(KEYS)}")
    return query.parse_filters(specs)


def epoch(stamp: str) -> float:
    """An ISO time from `parse_time` as seconds since the epoch."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
