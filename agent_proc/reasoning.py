"""A run's reasoning settings: which API it uses, checked against what the model takes, and
mapped onto each API's request.

`--reasoning-effort LEVEL`, `--thinking-budget N` and `--api chat|responses` are recorded
in the run's settings. Before a run starts, `check` refuses what the price table says the
model does not take (one clear line, exit 2), and `request_reasoning` turns the settings
into what the wire modules put in each request:

    chat completions   reasoning_effort: LEVEL
    Responses API      reasoning: {effort: LEVEL, summary: "auto"}, include: ["reasoning.encrypted_content"]
    Anthropic          thinking: {type: "enabled", budget_tokens: N}, max_tokens above N; or, for the
                       models that think adaptively, thinking: {type: "adaptive"}, output_config: {effort}

Import-light, like `providers` and `pricing`: the parent checks a run with it before it starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agent_proc.pricing import ModelInfo
from agent_proc.providers import ModelRef

# Anthropic's thinking budget per effort level, when --thinking-budget is not given.
DEFAULT_THINKING_BUDGETS = {"minimal": 1024, "low": 4096, "medium": 10_000, "high": 32_000, "xhigh": 48_000,
                            "max": 56_000}
ANSWER_ROOM = 8192  # output tokens left for the answer after the thinking budget

# OpenAI's reasoning models, for names the price table does not know yet: gpt-5 and later, o1, o3, o4, ...
_OPENAI_REASONING_NAME = re.compile(r"^(gpt-[5-9]|o\d)")


class ReasoningError(ValueError):
    """A reasoning setting the model does not take; the message says what to do, in one line."""


@dataclass(frozen=True)
class RequestReasoning:
    """What the wire modules put in every request of a run for its reasoning."""

    effort: str | None = None  # chat: reasoning_effort; Responses: reasoning.effort
    summaries: bool = False  # Responses: reasoning summaries streamed, encrypted reasoning kept for later turns
    thinking: dict[str, Any] | None = None  # Anthropic: the `thinking` parameter
    output_effort: str | None = None  # Anthropic, adaptive thinking: output_config.effort
    min_output_tokens: int | None = None  # Anthropic: max_tokens must leave room above the thinking


def reasons(ref: ModelRef, info: ModelInfo | None) -> bool | None:
    """Whether the model reasons: as the price table says, else (for OpenAI) by its name; None if unknown."""
    if info is not None and info.reasoning is not None:
        return info.reasoning
    if ref.provider.name == "openai" and _OPENAI_REASONING_NAME.match(ref.model):
        return True
    return None


def choose_api(ref: ModelRef, info: ModelInfo | None, asked: str | None) -> str | None:
    """The OpenAI format a run uses: `asked` (--api), else the Responses API for OpenAI's reasoning models
    (it streams their reasoning and keeps it across turns), else chat completions, the format every other
    OpenAI-compatible server speaks. None for a provider with a format of its own (Anthropic)."""
    if asked is not None:
        return asked
    if ref.provider.wire != "openai":
        return None
    if ref.provider.name == "openai" and (info is not None and info.responses_only or reasons(ref, info)):
        return "responses"
    return "chat"


def check(ref: ModelRef, info: ModelInfo | None, *, api: str | None, effort: str | None, budget: int | None) -> None:
    """Raise `ReasoningError` if the model cannot take these settings, so the run never starts with them."""
    name = ref.full_name
    fix = f'(if the table is wrong, correct the entry of {name} in $AGENT_HOME/prices.json)'
    if api == "responses" and ref.provider.wire != "openai":
        raise ReasoningError(f"--api responses is an OpenAI format; {name} speaks the {ref.provider.wire} format")
    if api == "chat" and info is not None and info.responses_only:
        raise ReasoningError(f"{name} is served by the Responses API only: use --api responses, its default")
    if budget is not None and ref.provider.wire != "anthropic":
        raise ReasoningError(f"--thinking-budget is for Anthropic models; for {name} use --reasoning-effort")
    if effort is not None and effort != "none" and reasons(ref, info) is False:
        raise ReasoningError(f"{name} does not reason, so it takes no --reasoning-effort {fix}")
    if info is None:
        return  # not in any table: the API is the judge
    if effort == "none" and info.always_reasons:
        raise ReasoningError(f"{name} always reasons: --reasoning-effort none is not possible {fix}")
    if effort is not None and info.efforts and info.reasoning and effort not in info.efforts:
        raise ReasoningError(f"{name} takes --reasoning-effort {'|'.join(info.efforts)}, not {effort} {fix}")
    if ref.provider.wire != "anthropic":
        return
    if budget is not None and info.thinking == ("adaptive",):
        raise ReasoningError(f"{name} decides how long it thinks (adaptive thinking): leave out --thinking-budget "
                             "and set --reasoning-effort")
    if budget is not None and info.max_output_tokens is not None and budget >= info.max_output_tokens:
        raise ReasoningError(f"--thinking-budget {budget} leaves no room for an answer: {name} writes at most "
                             f"{info.max_output_tokens} output tokens, thinking included")


def request_reasoning(ref: ModelRef, info: ModelInfo | None, *, api: str | None, effort: str | None,
                      budget: int | None) -> RequestReasoning:
    """The reasoning part of every request, for settings `check` has accepted."""
    reasoning_model = reasons(ref, info)
    if effort == "none" and reasoning_model is False:
        effort = None  # "do not reason" to a model that never does: nothing to say
    if ref.provider.wire == "anthropic":
        return _anthropic(info, effort, budget)
    if api == "responses":
        # Summaries are what streams while the model thinks; with effort "none" there is nothing to summarise.
        summaries = effort != "none" and (reasoning_model is True or effort is not None)
        return RequestReasoning(effort=effort, summaries=summaries)
    return RequestReasoning(effort=effort)


def _anthropic(info: ModelInfo | None, effort: str | None, budget: int | None) -> RequestReasoning:
    if effort is None and budget is None:
        return RequestReasoning()  # the model's own default
    if effort == "none":
        return RequestReasoning(thinking={"type": "disabled"})
    limit = info.max_output_tokens if info is not None else None
    adaptive = info is not None and info.thinking is not None and "adaptive" in info.thinking
    if adaptive and budget is None:
        room = DEFAULT_THINKING_BUDGETS[effort or "high"] + ANSWER_ROOM
        return RequestReasoning(thinking={"type": "adaptive"}, output_effort=effort,
                                min_output_tokens=min(room, limit) if limit else room)
    budget = budget or DEFAULT_THINKING_BUDGETS[effort or "medium"]
    if limit is not None:
        budget = min(budget, limit - 1)
    room = budget + ANSWER_ROOM
    return RequestReasoning(thinking={"type": "enabled", "budget_tokens": budget},
                            min_output_tokens=min(room, limit) if limit else room)
