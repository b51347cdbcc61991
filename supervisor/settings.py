"""Which model, endpoint and key a run uses: flags first, then LLM_* variables.

Checked before any child starts, so a missing key or a misspelt model is one clear
line at once, not a failed run later. The key itself is never stored: the child
reads it from the environment it inherits.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from agent_proc.conversation import Runtime, Settings
from agent_proc.providers import (
    ModelNameError,
    ModelRef,
    key_problem,
    key_required,
    key_variables,
    parse_model,
    select_api_key,
)


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class ModelSettings:
    ref: ModelRef
    base_url: str


def resolve_model(model: str | None, base_url: str | None) -> ModelSettings:
    """The model and endpoint for a new run; raises `SettingsError` with what to do."""
    ref = _parsed(model or os.environ.get("LLM_MODEL") or "")
    return ModelSettings(ref, _checked_url(ref, base_url or os.environ.get("LLM_BASE_URL")))


def _parsed(name: str) -> ModelRef:
    try:
        return parse_model(name)
    except ModelNameError as e:
        raise SettingsError(str(e)) from None


def _checked_url(ref: ModelRef, base_url: str | None) -> str:
    url = (base_url or ref.provider.default_base_url or "").rstrip("/")
    if not url:
        raise SettingsError(f"provider {ref.provider.name!r} has no default endpoint: "
                            "pass --base-url or set LLM_BASE_URL")
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"base URL {url!r} must start with http:// or https://")
    return url


def change_model(current: ModelSettings, model: str | None, base_url: str | None) -> ModelSettings:
    """The model and endpoint of a conversation that `agent resume --model/--base-url`
    moves elsewhere. A new model keeps the endpoint unless its provider differs: then
    it gets the new provider's own endpoint (or the --base-url given)."""
    ref = _parsed(model) if model else current.ref
    if base_url is None:
        same_provider = ref.provider.name == current.ref.provider.name
        base_url = current.base_url if same_provider else None
    return ModelSettings(ref, _checked_url(ref, base_url))


def check_key(settings: ModelSettings) -> None:
    """Raise `SettingsError` if the endpoint needs a key and none is set, or if the key
    that would be sent cannot go in an HTTP header (said without quoting it)."""
    provider = settings.ref.provider
    found = select_api_key(provider)
    if found is not None and (problem := key_problem(found[1])):
        raise SettingsError(f"the API key in {found[0]} {problem}; fix the variable")
    if key_required(provider, settings.base_url) and found is None:
        names = " or ".join(key_variables(provider))
        raise SettingsError(
            f"no API key for {settings.ref.full_name} at {settings.base_url}: set {names}, "
            "or point --base-url at a local server"
        )


def check_budget(settings: ModelSettings, run_settings: Settings) -> None:
    """The price table must be readable, and --max-cost needs the model's price."""
    from agent_proc.pricing import PricingError, find_price

    try:
        price = find_price(settings.ref.full_name)
    except PricingError as e:
        raise SettingsError(str(e)) from None
    if run_settings.max_cost is not None and price is None:
        raise SettingsError(
            f"--max-cost needs the price of {settings.ref.full_name}, which is unknown: add it to "
            "$AGENT_HOME/prices.json or set LLM_INPUT_COST_PER_TOKEN and LLM_OUTPUT_COST_PER_TOKEN"
        )


def check_reasoning(settings: ModelSettings, run_settings: Settings) -> Settings:
    """`run_settings` with the API the run will use filled in (--api, else the model's default), once the
    model is known to take its reasoning settings; raises `SettingsError` with what to do otherwise."""
    from agent_proc import reasoning
    from agent_proc.pricing import PricingError, find_model

    try:
        model = find_model(settings.ref.full_name)
    except PricingError as e:
        raise SettingsError(str(e)) from None
    info = model.info if model is not None else None
    api = reasoning.choose_api(settings.ref, info, run_settings.api)
    try:
        reasoning.check(settings.ref, info, api=api, effort=run_settings.reasoning_effort,
                        budget=run_settings.thinking_budget)
    except reasoning.ReasoningError as e:
        raise SettingsError(str(e)) from None
    return dataclasses.replace(run_settings, api=api)


BACKEND_ENV = "AGENT_BACKEND"


@dataclass(frozen=True)
class Placement:
    """Where a run executes: a backend (`supervisor.backends`) and the options passed
    to its scheduler as they are (`--sbatch-arg`)."""

    backend: str
    args: tuple[str, ...] = ()


def resolve_placement(backend: str | None, args: tuple[str, ...], last: Runtime | None = None) -> Placement:
    """--backend, else the backend the conversation last ran on (`last`, for resume),
    else $AGENT_BACKEND, else local. Without new --sbatch-arg, a run resubmitted to the
    same scheduler keeps the options of its last job."""
    from supervisor import backends

    ran_before = last is not None and (last.started_at is not None or last.job is not None)
    name = backend or (last.backend if ran_before and last else None) or os.environ.get(BACKEND_ENV) or backends.DEFAULT
    if name not in backends.names():
        raise SettingsError(f"unknown backend {name!r} (from ${BACKEND_ENV}); known: {', '.join(backends.names())}")
    if args and name != "slurm":
        raise SettingsError(f"--sbatch-arg is for --backend slurm, not {name}")
    if problem := backends.get(name).unavailable():
        raise SettingsError(problem)
    if not args and last is not None and last.backend == name and last.job:
        args = tuple(last.job.get("args") or ())
    return Placement(name, args)
