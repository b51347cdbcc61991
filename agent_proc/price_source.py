"""LiteLLM's community price table, turned into the project's price file.

The LiteLLM project keeps `model_prices_and_context_window.json`: per model, prices in USD
per token, context window, output limit and what the model can do (reasoning, effort
levels, thinking forms). Its PyPI package ships a copy. `scripts/update_prices.py` turns
such a copy into `agent_proc/data/prices.json`; `agent models --update-prices` fetches the
current table into `$AGENT_HOME`. Both go through `convert`, which keeps only the chat
models of the hosted providers in `providers.PROVIDERS`, under the names `-m` takes.

Import-light: the standard library only, so the CLI command pays for nothing else.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_proc.providers import EFFORT_LEVELS, PROVIDERS

# Where LiteLLM publishes the table; `agent models --update-prices` fetches it from here
# unless AGENT_PRICES_URL says otherwise (a mirror, or a test's server on 127.0.0.1).
DEFAULT_URL = "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json"
URL_ENV = "AGENT_PRICES_URL"
FETCH_TIMEOUT = 30.0

# LiteLLM flags a level a model takes beyond the usual three with `supports_<level>_reasoning_effort`.
_OPTIONAL_EFFORTS = ("none", "minimal", "xhigh", "max")
_USUAL_EFFORTS = ("low", "medium", "high")

_CHAT_MODES = ("chat", "responses")
_PER_MILLION = 1_000_000


class SourceError(ValueError):
    """A source table that cannot be used; the message says why, in one line."""


def hosted_providers() -> list[str]:
    """The providers whose models have a price: the hosted ones (a server you run yourself costs what it costs)."""
    return [p.name for p in PROVIDERS.values() if p.needs_key]


def convert(source: Any, *, taken_on: str, source_note: str) -> dict[str, Any]:
    """The project's price document (`agent_proc/data/prices.json` format) from LiteLLM's table.

    `taken_on` (YYYY-MM-DD) and `source_note` (where the copy came from, with its version)
    are recorded in the document, so `agent models` can say how old the prices are.
    """
    if not isinstance(source, dict):
        raise SourceError("the price source is not a JSON object of models")
    providers = set(hosted_providers())
    models: dict[str, dict[str, Any]] = {}
    explicit: set[str] = set()  # names LiteLLM spelt with the provider prefix itself
    for key, entry in source.items():
        if not isinstance(entry, dict) or entry.get("litellm_provider") not in providers:
            continue
        if entry.get("mode") not in _CHAT_MODES:
            continue
        converted = convert_entry(entry)
        if converted is None:
            continue
        provider = entry["litellm_provider"]
        prefixed = key.startswith(provider + "/")
        name = key if prefixed else f"{provider}/{key}"
        # LiteLLM lists some models twice, with and without the prefix; the prefixed entry is the provider's own.
        if name in explicit and not prefixed:
            continue
        models[name] = converted
        if prefixed:
            explicit.add(name)
    if not models:
        raise SourceError("the price source has no chat model of a supported provider: is it LiteLLM's table?")
    return {
        "schema_version": 1,
        "taken_on": taken_on,
        "source": source_note,
        "unit": "USD per million tokens",
        "models": dict(sorted(models.items())),
    }


def convert_entry(entry: dict[str, Any]) -> dict[str, Any] | None:
    """One model in the project's format, or None when it has no usable input and output price."""
    prices = {
        "input": _per_million(entry.get("input_cost_per_token")),
        "output": _per_million(entry.get("output_cost_per_token")),
        "cached_input": _per_million(entry.get("cache_read_input_token_cost")),
        "cache_write": _per_million(entry.get("cache_creation_input_token_cost")),
    }
    if prices["input"] is None or prices["output"] is None:
        return None
    if prices["output"] == 0 < prices["input"]:
        return None  # half a price: an entry still being written, not a model that answers for free
    out: dict[str, Any] = {k: v for k, v in prices.items() if v is not None}
    # LiteLLM writes 0 for "no separate cache price"; tokens read or written would otherwise cost nothing.
    for field in ("cached_input", "cache_write"):
        if out.get(field) == 0 < out["input"]:
            del out[field]
    if isinstance(entry.get("max_input_tokens"), int):
        out["context_window"] = entry["max_input_tokens"]
    if isinstance(entry.get("max_output_tokens"), int):
        out["max_output_tokens"] = entry["max_output_tokens"]
    out["reasoning"] = entry.get("supports_reasoning") is True
    if out["reasoning"]:
        out.update(_reasoning_details(entry))
    if entry.get("mode") == "responses":
        out["responses_only"] = True
    return out


def _reasoning_details(entry: dict[str, Any]) -> dict[str, Any]:
    """Which effort levels and thinking forms a reasoning model takes, where the table says."""
    details: dict[str, Any] = {}
    levels = entry.get("reasoning_effort_levels")
    flagged = {level: entry[f"supports_{level}_reasoning_effort"] for level in _OPTIONAL_EFFORTS
               if isinstance(entry.get(f"supports_{level}_reasoning_effort"), bool)}
    if isinstance(levels, list):
        details["efforts"] = [level for level in EFFORT_LEVELS if level in levels]
    elif flagged:
        # Some level is flagged, so the list is complete: the usual three plus the flagged ones.
        details["efforts"] = [level for level in EFFORT_LEVELS if level in _USUAL_EFFORTS or flagged.get(level)]
    # Without flags or a list the table does not say; every level is then let through to the API.
    if entry.get("supports_adaptive_thinking") is True:
        details["thinking"] = ["adaptive", "budget"] if entry.get("supports_legacy_thinking") else ["adaptive"]
    if entry.get("thinking_always_on") is True:
        details["always_reasons"] = True
    return details


def _per_million(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    # Rounded to drop the float noise of per-token figures (1.75e-06 * 1e6 = 1.7499999999999998).
    return round(value * _PER_MILLION, 6)


def fetch(url: str | None = None) -> tuple[Any, str]:
    """LiteLLM's current table, fetched from `url` (default `$AGENT_PRICES_URL`, else LiteLLM's repository).

    Returns the parsed JSON and the URL it came from; raises `SourceError` with one line
    when the network or the document fails.
    """
    import urllib.error
    import urllib.request

    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise SourceError(f"{URL_ENV}={url!r} must start with http:// or https://")
    request = urllib.request.Request(url, headers={"User-Agent": "agent-supervisor price update"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
            data = response.read()
    except urllib.error.HTTPError as e:
        raise SourceError(f"cannot fetch the price table from {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise SourceError(f"cannot fetch the price table from {url} (offline?): {reason}") from None
    try:
        return json.loads(data), url
    except ValueError as e:
        raise SourceError(f"the price table at {url} is not valid JSON ({e})") from None


def update(save: Callable[[dict[str, Any]], Path], url: str | None = None) -> tuple[Path, int]:
    """Fetch LiteLLM's current table, convert it and hand it to `save` (which installs it and says where).

    Returns that path and how many models the new table prices.
    """
    from datetime import datetime, timezone

    table, where = fetch(url)
    today = datetime.now(timezone.utc).date().isoformat()
    doc = convert(table, taken_on=today, source_note=f"LiteLLM's community table, fetched from {where}")
    return save(doc), len(doc["models"])
