"""The strict checks of extended thinking on the Anthropic messages wire, written from the API reference.

Thinking blocks come back as they were given out (the signature of each must match its text), only
in assistant messages; with thinking on, a tool loop must go on from an assistant message that starts
with its thinking; the budget must be at least 1024 tokens and below max_tokens.
"""

from __future__ import annotations

from typing import Any

from supervisor.scripted_server import signing

MIN_BUDGET = 1024
_THINKING_TYPES = frozenset({"enabled", "disabled", "adaptive"})
_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
THINKING_BLOCKS = ("thinking", "redacted_thinking")


def problems(body: dict[str, Any]) -> list[str]:
    """Return what the real API would reject about thinking in this request body; [] when nothing."""
    found = _setting_problems(body)
    messages = body.get("messages")
    if not isinstance(messages, list):
        return found
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for number, block in enumerate(content):
            if isinstance(block, dict) and block.get("type") in THINKING_BLOCKS:
                found += _block_problems(f"messages.{index}.content.{number}", message.get("role"), block)
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        found += _tool_loop_problems(messages)
    return found


def _setting_problems(body: dict[str, Any]) -> list[str]:
    found = []
    thinking = body.get("thinking")
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind not in _THINKING_TYPES:
            found.append(f"thinking.type: Input should be 'enabled', 'disabled' or 'adaptive', not {kind!r}")
        elif kind == "enabled":
            budget = thinking.get("budget_tokens")
            if isinstance(budget, bool) or not isinstance(budget, int) or budget < MIN_BUDGET:
                found.append(f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_BUDGET}")
            elif isinstance(body.get("max_tokens"), int) and budget >= body["max_tokens"]:
                found.append("`max_tokens` must be greater than `thinking.budget_tokens`")
    output_config = body.get("output_config")
    if output_config is not None:
        effort = output_config.get("effort") if isinstance(output_config, dict) else None
        if effort not in _EFFORTS:
            found.append(f"output_config.effort: Input should be one of {sorted(_EFFORTS)}, not {effort!r}")
    return found


def _block_problems(where: str, role: Any, block: dict[str, Any]) -> list[str]:
    if role != "assistant":
        return [f"{where}: thinking blocks may only appear in assistant messages"]
    if block["type"] == "redacted_thinking":
        sealed = signing.unseal(block.get("data"))
        return [] if sealed is not None else [f"{where}: Invalid `data` in `redacted_thinking` block"]
    if "cache_control" in block:
        return [f"{where}.cache_control: thinking blocks cannot be cached directly"]
    if not signing.signed(block.get("thinking") or "", block.get("signature")):
        return [f"{where}: Invalid `signature` in `thinking` block"]
    return []


def _tool_loop_problems(messages: list[Any]) -> list[str]:
    """With thinking on, a request that goes on from tool results must send back the thinking before them."""
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "user" or not isinstance(last.get("content"), list):
        return []
    if not any(isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"]):
        return []
    index = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"),
                default=None)
    if index is None or not isinstance(messages[index].get("content"), list) or not messages[index]["content"]:
        return []
    first = messages[index]["content"][0]
    kind = first.get("type") if isinstance(first, dict) else None
    if kind in THINKING_BLOCKS:
        return []
    return [f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{kind}`. "
            "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
            "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include "
            "thinking blocks from previous turns. To avoid this requirement, disable `thinking`."]
