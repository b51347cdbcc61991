"""`agent cost`: tokens and USD spent, totalled by model, label, name or day.

Each conversation's state keeps its model calls totalled per UTC day and model
(`State.usage`), so a report over thousands of conversations reads no history.
Times are therefore counted to the day: `--since 2h` counts the calls of every day
that period touches.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from supervisor import render
from supervisor.index import Entry
from supervisor.summary import SCHEMA_VERSION

BY_CHOICES = ("model", "label", "name", "day")
AMOUNTS = ("calls", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "cost_usd",
           "estimated_usd", "unpriced_calls")
NO_LABELS = "(no labels)"
NO_NAME = "(no name)"


def _usage(entry: Entry) -> dict[str, dict[str, Any]]:
    """The entry's usage per day and model; for a conversation recorded before these
    were kept, its totals on the day it was made."""
    if entry.usage or not entry.summary["model_calls"]:
        return entry.usage
    doc = entry.summary
    cost = doc["cost_usd"]
    return {f"{doc['created_at'][:10]} {doc['model']}": {
        "calls": doc["model_calls"], "prompt_tokens": doc["prompt_tokens"],
        "completion_tokens": doc["completion_tokens"], "cached_tokens": doc["cached_tokens"],
        "reasoning_tokens": doc["reasoning_tokens"], "cost_usd": cost or 0.0,
        "estimated_usd": (cost or 0.0) if doc["cost_estimated"] else 0.0,
        "unpriced_calls": doc["model_calls"] if cost is None else 0,
    }}


def _groups(by: str, doc: dict[str, Any], day: str, model: str) -> list[str]:
    if by == "model":
        return [model]
    if by == "day":
        return [day]
    if by == "name":
        return [doc["name"] or NO_NAME]
    return [f"{k}={v}" for k, v in sorted(doc["labels"].items())] or [NO_LABELS]


def _zero() -> dict[str, Any]:
    return {"conversations": 0, **{a: 0 for a in AMOUNTS}, "cost_usd": 0.0, "estimated_usd": 0.0}


def _add(totals: dict[str, Any], bucket: dict[str, Any]) -> None:
    for amount in AMOUNTS:
        totals[amount] += bucket.get(amount) or 0


def report(entries: Iterable[Entry], by: str, since: str | None = None, until: str | None = None) -> dict[str, Any]:
    """Totals per group and overall, over the calls made from the day of `since` to the
    day of `until` (ISO times)."""
    groups: dict[str, dict[str, Any]] = {}
    total = _zero()
    for entry in entries:
        seen: set[str] = set()
        counted = False
        for key, bucket in _usage(entry).items():
            day, _, model = key.partition(" ")
            if (since and day < since[:10]) or (until and day > until[:10]):
                continue
            for group in _groups(by, entry.summary, day, model):
                totals = groups.setdefault(group, _zero())
                _add(totals, bucket)
                if group not in seen:
                    seen.add(group)
                    totals["conversations"] += 1
            _add(total, bucket)
            counted = True
        total["conversations"] += counted
    rows = [{by: key, **_rounded(value)} for key, value in sorted(groups.items())]
    return {"schema_version": SCHEMA_VERSION, "by": by, "since": since, "until": until, "groups": rows,
            "total": _rounded(total)}


def _rounded(totals: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in totals.items()}


def _cost_cell(totals: dict[str, Any]) -> str:
    if totals["calls"] and totals["unpriced_calls"] == totals["calls"]:
        return "unknown (no price for these models)"
    text = render.cost(totals["cost_usd"])
    if totals["estimated_usd"]:
        text += f" (~{render.cost(totals['estimated_usd'])} estimated)"
    if totals["unpriced_calls"]:
        text += f" (+{totals['unpriced_calls']} calls of unknown price)"
    return text


def table(doc: dict[str, Any]) -> str:
    """The report for people: one row per group and a TOTAL row."""
    header = [doc["by"].upper(), "CONVERSATIONS", "CALLS", "PROMPT TOKENS", "COMPLETION TOKENS", "COST"]
    rows = [header]
    for row in [*doc["groups"], {doc["by"]: "TOTAL", **doc["total"]}]:
        rows.append([row[doc["by"]], str(row["conversations"]), str(row["calls"]), str(row["prompt_tokens"]),
                     str(row["completion_tokens"]), _cost_cell(row)])
    return render.table(rows)
