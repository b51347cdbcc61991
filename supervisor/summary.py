"""The one JSON shape of a conversation that every command prints (docs/json.md).

`run --json`, `ps --json`, `wait --json`, `resume --json`, `pause --json`, the
`state` of `show --json` and `interrupt --json` all print `summary(state)`; commands
that have more to say add keys of their own next to these, never rename them.
"""

from __future__ import annotations

from typing import Any

from agent_proc.conversation import State
from agent_proc.status import Status

SCHEMA_VERSION = 1

# In the order `docs/json.md` lists them; a template (`--format '{id} {status}'`) may use any.
FIELDS = (
    "schema_version", "id", "name", "labels", "status", "reason", "kind", "model", "base_url", "workspace",
    "prompt", "created_at", "updated_at", "started_at", "ended_at", "pid", "supervisor_pid", "host", "backend", "job",
    "exit_code",
    "cost_usd", "cost_estimated", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
    "total_tokens", "model_calls", "http_attempts", "tool_calls", "iterations", "events_seq", "final_answer",
)


def summary(state: State) -> dict[str, Any]:
    """What a script needs to know about a conversation, under the documented names."""
    m, r = state.metrics, state.runtime
    running = state.status is Status.RUNNING
    return {
        "schema_version": SCHEMA_VERSION,
        "id": state.id,
        "name": state.name,
        "labels": dict(state.labels),
        "status": state.status.value,
        "reason": state.status_reason,
        "kind": state.status_kind,
        "model": state.model,
        "base_url": state.base_url,
        "workspace": state.workspace,
        "prompt": state.prompt,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "pid": r.pid if running else None,
        "supervisor_pid": r.supervisor_pid if running else None,
        "host": (r.host or {}).get("hostname"),
        "backend": r.backend,
        "job": r.job,
        "exit_code": r.exit_code,
        "cost_usd": m.accumulated_cost,
        "cost_estimated": m.cost_estimated,
        "prompt_tokens": m.prompt_tokens,
        "completion_tokens": m.completion_tokens,
        "cached_tokens": m.cached_tokens,
        "reasoning_tokens": m.reasoning_tokens,
        "total_tokens": m.prompt_tokens + m.completion_tokens,
        "model_calls": m.model_calls,
        "http_attempts": m.http_attempts,
        "tool_calls": m.tool_calls,
        "iterations": m.iterations,
        "events_seq": state.events_seq,
        "final_answer": state.final_answer,
    }
