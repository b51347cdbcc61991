"""Turning states and events into text for people. Pure functions: data in, str out."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from agent_proc import sandbox
from agent_proc.conversation import Runtime, State
from supervisor.backends import Probe

if TYPE_CHECKING:
    from agent_proc.pricing import Model


def age(iso: str, now: datetime | None = None) -> str:
    """`2026-01-01T00:00:00Z` as a short age like `42s`, `5m`, `3h`, `2d`."""
    if not iso:
        return "-"
    then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cost(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def where(state: State) -> str:
    """Where the run under way executes ("pid 4242", "slurm job 17 on node3"), else "-"."""
    from agent_proc.status import ACTIVE
    from supervisor import backends

    if state.status not in ACTIVE:
        return "-"
    try:
        return backends.of(state.runtime).describe(state.runtime)
    except backends.BackendError:
        return state.runtime.backend


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def state_header(state: State, probe: Probe | None = None) -> str:
    m, r = state.metrics, state.runtime
    lines = [
        f"id:          {state.id}" + (f"  (name {state.name})" if state.name else ""),
        *([f"labels:      {', '.join(f'{k}={v}' for k, v in sorted(state.labels.items()))}"] if state.labels else []),
        f"status:      {state.status.value}" + (f" ({state.status_reason})" if state.status_reason else ""),
        *([f"alive:       {probe.liveness.value} ({probe.detail})"] if probe else []),
        f"model:       {state.model}  at {state.base_url}",
        f"workspace:   {state.workspace}",
        f"sandbox:     {sandbox.describe(state.settings)}",
        f"created:     {state.created_at}  (updated {state.updated_at})",
        _process_line(r),
        f"usage:       {m.model_calls} model calls, {m.tool_calls} tool calls, "
        f"{m.prompt_tokens} prompt + {m.completion_tokens} completion tokens, cost {cost(m.accumulated_cost)}",
    ]
    if r.stop:
        lines.append(f"last stop:   {r.stop.get('method')} via {', '.join(r.stop.get('signals', []))} "
                     f"in {r.stop.get('duration_ms')} ms (requested by {r.stop.get('requested_by')})")
    if state.final_answer is not None:
        lines.append(f"answer:      {state.final_answer}")
    return "\n".join(lines)


def _process_line(runtime: Runtime) -> str:
    job = runtime.job or {}
    if job:
        started = f", started {job['started_at']}" if job.get("started_at") else ", not started"
        node = f" on {job['node']}" if job.get("node") else ""
        cluster = f" (cluster {job['cluster']})" if job.get("cluster") else ""
        line = f"job:         {runtime.backend} job {job.get('id')}{node}{cluster}, submitted {job.get('submitted_at')}"
        line += f"{started}\n"
    else:
        line = ""
    if not runtime.pid:
        return line + "process:     never started"
    ended = f", exit {runtime.exit_code}" if runtime.exit_code is not None else ""
    host = f" on {runtime.host['hostname']}" if runtime.host else ""
    return line + f"process:     pid {runtime.pid}{host}, started {runtime.started_at}{ended}"


# Events that record the process machinery rather than the conversation; `show` hides them unless --all.
BOOKKEEPING_EVENTS = frozenset({"started", "exited", "model_call_started"})


def event_text(event: dict[str, Any]) -> str:
    """One history event as a few lines of text."""
    kind, ts = event["type"], f"{event['ts'][:10]} {event['ts'][11:23]}"
    head = f"{ts} #{event['seq']:<4}"
    if kind == "user_message":
        return f"{head} user{' (sent)' if event.get('source') == 'send' else ''}: {event['content']}"
    if kind == "model_message":
        label = "model" if not event.get("partial") else f"model [PARTIAL: {event.get('outcome')}]"
        parts = [f"{head} {label}: {event.get('content') or ''}".rstrip()]
        usage = event.get("usage") or {}
        estimated = " (estimated)" if event.get("cost_estimated") else ""
        thought = f" ({usage['reasoning_tokens']} reasoning)" if usage.get("reasoning_tokens") else ""
        parts.append(f"{' ' * len(head)} {usage.get('prompt_tokens', 0)} + {usage.get('completion_tokens', 0)} tokens"
                     f"{thought}, cost {cost(event.get('cost'))}{estimated}, {event.get('latency_ms')} ms")
        if event.get("reasoning"):
            label = "reasoning (cut off): " if event.get("partial") else "reasoning: "
            margin = "\n" + " " * (len(head) + 1 + len(label))
            text = margin.join(event["reasoning"].rstrip().splitlines())
            parts.append("\n".join(line.rstrip() for line in f"{' ' * len(head)} {label}{text}".splitlines()))
        for call in event.get("tool_calls") or []:
            parts.append(f"{' ' * len(head)} -> {call['name']}({call['arguments']})  [{call['id']}]")
        return "\n".join(parts)
    if kind == "tool_result":
        return f"{head} tool {event['name']} [{event.get('outcome')}]: {event['content']}"
    if kind == "status":
        reason = f" ({event['reason']})" if event.get("reason") else ""
        return f"{head} status {event['from']} -> {event['to']}{reason}"
    if kind == "interrupted":
        return f"{head} INTERRUPTED by {event.get('signal')} during {event.get('during')}"
    if kind == "stopped":
        return (f"{head} stopped by {event.get('requested_by')}: {', '.join(event.get('signals', []))} "
                f"({event.get('method')}) in {event.get('duration_ms')} ms")
    if kind == "error":
        return f"{head} ERROR ({event.get('kind')}): {event.get('message')}"
    rest = {k: v for k, v in event.items() if k not in ("seq", "ts", "type")}
    return f"{head} {kind} {json.dumps(rest, ensure_ascii=False)}" if rest else f"{head} {kind}"


def show_text(state: State, events: list[dict[str, Any]], pending: list[str], probe: Probe | None = None) -> str:
    lines = [state_header(state, probe), "", "history:"]
    lines += [event_text(e) for e in events]
    if pending:
        lines += ["", "waiting in the inbox:"] + [f"  {p}" for p in pending]
    return "\n".join(lines)


def _per_million(per_token: float | None) -> str:
    return "-" if per_token is None else f"{per_token * 1_000_000:.4g}"


def _tokens(count: int | None) -> str:
    if count is None:
        return "-"
    return f"{count / 1_000_000:g}M" if count >= 1_000_000 else f"{count // 1000}k" if count >= 1000 else str(count)


def reasons(model: Model) -> str:
    """Whether a model reasons, and the effort levels it takes where the table says."""
    info = model.info
    if info.reasoning is None:
        return "?"
    if not info.reasoning:
        return "no"
    return "yes" + (f" ({','.join(info.efforts)})" if info.efforts else "")


def models_table(models: dict[str, Model]) -> str:
    """Models with their prices in USD per million tokens, context window and reasoning."""
    rows = [["MODEL", "INPUT $/M", "OUTPUT $/M", "CACHED $/M", "CONTEXT", "REASONS"]]
    for name, model in models.items():
        price = model.price
        rows.append([name, _per_million(price.input), _per_million(price.output), _per_million(price.cached_input),
                     _tokens(model.info.context_window), reasons(model)])
    return table(rows)


def models_json(models: dict[str, Model]) -> list[dict[str, Any]]:
    """Models for `agent models --json`: prices in USD per million tokens, as the table files have them."""
    out = []
    for name, model in models.items():
        price, info = model.price, model.info
        out.append({
            "name": name,
            "input": price.input * 1_000_000, "output": price.output * 1_000_000,
            "cached_input": None if price.cached_input is None else price.cached_input * 1_000_000,
            "cache_write": None if price.cache_write is None else price.cache_write * 1_000_000,
            "price_source": price.source,
            "context_window": info.context_window, "max_output_tokens": info.max_output_tokens,
            "reasoning": info.reasoning, "efforts": list(info.efforts) if info.efforts else None,
        })
    return out
