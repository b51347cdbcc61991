"""What model calls cost, and what the price table knows about each model besides.

A price is looked up in this order:

    LLM_INPUT_COST_PER_TOKEN, LLM_OUTPUT_COST_PER_TOKEN   the environment, for one run, any model
    $AGENT_HOME/prices.json                               the user's own table, same format as the shipped one
    $AGENT_HOME/prices-updated.json                       the table `agent models --update-prices` fetched
    agent_proc/data/prices.json                           the shipped table

The files are in USD per million tokens, as pricing pages print them; a `Price` is in USD
per token. A model found nowhere has no price (`None`), never a price of 0: a cost that is
not known must not be reported as free. The shipped and updated tables are made from
LiteLLM's community table (`price_source`), which also says per model how large its
context window is and whether (and how) it reasons: `ModelInfo`.

Import-light on purpose, like `providers`: the parent may price a run without paying for the child's imports.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_proc.providers import EFFORT_LEVELS

SCHEMA_VERSION = 1
UNIT = "USD per million tokens"
OVERRIDE_FILE = "prices.json"
UPDATED_FILE = "prices-updated.json"
SHIPPED_FILE = Path(__file__).resolve().parent / "data" / "prices.json"

ENV_INPUT = "LLM_INPUT_COST_PER_TOKEN"
ENV_OUTPUT = "LLM_OUTPUT_COST_PER_TOKEN"
ENV_CACHED_INPUT = "LLM_CACHED_INPUT_COST_PER_TOKEN"
ENV_CACHE_WRITE = "LLM_CACHE_WRITE_COST_PER_TOKEN"

_ENV_VARIABLES = {"input": ENV_INPUT, "output": ENV_OUTPUT, "cached_input": ENV_CACHED_INPUT,
                  "cache_write": ENV_CACHE_WRITE}
_REQUIRED_FIELDS = ("input", "output")
_OPTIONAL_FIELDS = ("cached_input", "cache_write")
# What a table may say about a model besides its price; all optional.
_THINKING_FORMS = ("adaptive", "budget")
_INFO_FIELDS = ("context_window", "max_output_tokens", "reasoning", "efforts", "thinking", "always_reasons",
                "responses_only")
_TOKENS_PER_MILLION = 1_000_000


class PricingError(ValueError):
    """A price file or variable that cannot be used; the message names it, in one line."""


@dataclass(frozen=True)
class Price:
    """What one model charges, in USD per token."""

    input: float
    output: float
    cached_input: float | None = None  # cache reads; None means they cost `input`
    cache_write: float | None = None  # cache creation (Anthropic); None means it costs `input`
    source: str = ""  # "table (taken_on ...)", "override file PATH" or "environment"


@dataclass(frozen=True)
class ModelInfo:
    """What a table says about a model besides its price; None where it does not say."""

    context_window: int | None = None  # input tokens
    max_output_tokens: int | None = None
    reasoning: bool | None = None  # whether it thinks before it answers (and takes --reasoning-effort)
    efforts: tuple[str, ...] | None = None  # the --reasoning-effort levels it takes; None: not known
    thinking: tuple[str, ...] | None = None  # Anthropic: "adaptive" and/or "budget"; None: "budget" only
    always_reasons: bool = False  # thinking cannot be turned off (no effort "none")
    responses_only: bool = False  # OpenAI: only the Responses API serves it


@dataclass(frozen=True)
class Model:
    price: Price
    info: ModelInfo


@dataclass(frozen=True)
class _Table:
    """A dated table of LiteLLM's models (shipped or updated): hundreds of them, of which a run needs
    one, so an entry is checked and parsed when it is first looked up."""

    raw: dict[str, Any]  # name -> the entry as the file has it
    where: str
    label: str  # how a price from it says where it came from
    taken_on: str
    source: str
    parsed: dict[str, Model] = dataclasses.field(default_factory=dict)

    def get(self, name: str) -> Model | None:
        if name not in self.parsed and name in self.raw:
            self.parsed[name] = _parse_entry(name, self.raw[name], f"{self.where}: model {name!r}", self.label)
        return self.parsed.get(name)

    def every(self) -> dict[str, Model]:
        return {name: model for name in self.raw if (model := self.get(name)) is not None}


# --------------------------------------------------------------------------- lookup


def load_models(home: Path | None = None) -> dict[str, Model]:
    """Every model the tables know: the shipped table, then the updated one, then the user's, each
    replacing or adding to the one before (default home: `agent_home()`).

    A missing file is fine; one that cannot be read or checked raises `PricingError`.
    """
    models: dict[str, Model] = {}
    for table in reversed(_tables(_home(home))):
        models.update(table.every())
    return models


def load_table(home: Path | None = None) -> dict[str, Price]:
    """The price of every model the tables know (see `load_models`)."""
    return {name: model.price for name, model in load_models(home).items()}


_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def find_model(model: str, *, home: Path | None = None, environ: Mapping[str, str] | None = None) -> Model | None:
    """What the tables know of `model` (`provider/model`), its price and more; None if nothing.

    The LLM_*_COST_PER_TOKEN variables of `environ` (default `os.environ`) win over any table's price,
    for any model. Otherwise the exact name is looked up, then the name that `model` is a dated snapshot
    of: `openai/gpt-4o-2024-08-06` and `anthropic/claude-sonnet-4-5-20250929` are what `openai/gpt-4o`
    and `anthropic/claude-sonnet-4-5` are. Only a date (or `-latest`) counts as a snapshot suffix: a newer
    model such as `claude-opus-9-9` must not be taken for `claude-opus-9`; it is unknown until the table
    knows it.
    """
    from_env = _price_from_env(os.environ if environ is None else environ)
    tables = _tables(_home(home))
    found = _look_up(tables, model)
    if found is None and (family := _SNAPSHOT_SUFFIX.sub("", model)) != model:
        found = _look_up(tables, family)
    if from_env is not None:
        return Model(price=from_env, info=found.info if found else ModelInfo())
    return found


def find_price(model: str, *, home: Path | None = None, environ: Mapping[str, str] | None = None) -> Price | None:
    """The price of `model` (`provider/model`), or None if it is not known (see `find_model`)."""
    found = find_model(model, home=home, environ=environ)
    return None if found is None else found.price


def table_info(home: Path | None = None) -> dict[str, str]:
    """Which table the prices come from, when it was taken and from where:
    `{"taken_on": ..., "source": ..., "file": ...}`; the updated table once there is one."""
    updated = _updated(_home(home))
    table, file = (updated, _home(home) / UPDATED_FILE) if updated is not None else (_shipped(), SHIPPED_FILE)
    return {"taken_on": table.taken_on, "source": table.source, "file": str(file)}


def save_updated(doc: dict[str, Any], home: Path | None = None) -> Path:
    """Check a price document (as `price_source.convert` makes it) and install it as the updated table,
    atomically: a reader sees the old table or the new one, never half of one."""
    home = _home(home)
    path = home / UPDATED_FILE
    _parse_models(doc, f"fetched price table for {path}", source="check")
    from agent_proc.conversation import make_private_dir, write_atomic

    make_private_dir(home)
    write_atomic(path, (json.dumps(doc, indent=1) + "\n").encode())  # a new private temp file (0600), renamed
    return path


# --------------------------------------------------------------------------- cost


def cost_of(usage: Mapping[str, int], price: Price) -> float:
    """The cost in USD of one call's `usage` (the project's canonical token counts), not rounded.

    `prompt_tokens` counts every input token, `cached_tokens` and `cache_write_tokens` included;
    `completion_tokens` counts every output token, `reasoning_tokens` included, so neither part
    is added twice.
    """
    prompt = usage.get("prompt_tokens") or 0
    cached = usage.get("cached_tokens") or 0
    written = usage.get("cache_write_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    # A provider whose counts do not add up must not make the uncached part negative and lower the cost.
    uncached = max(prompt - cached - written, 0)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    write_rate = price.input if price.cache_write is None else price.cache_write
    return uncached * price.input + cached * cached_rate + written * write_rate + completion * price.output


def estimate_tokens(text: str) -> int:
    """A rough token count for text whose real count never arrived: one token per 4 characters, rounded up."""
    return (len(text) + 3) // 4


def estimate_messages_tokens(messages: list[dict[str, Any]]) -> int:
    """A rough token count of chat messages: their text contents and the arguments of their tool calls."""
    total = 0
    for message in messages:
        total += estimate_tokens(_text_of(message.get("content")))
        for call in message.get("tool_calls") or []:
            # The chat API nests the arguments under "function"; the conversation's events keep them at the top.
            function = call.get("function") or call
            total += estimate_tokens(function.get("arguments") or "")
    return total


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Multi-part content: images and other non-text parts have no length in characters to go by.
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


# --------------------------------------------------------------------------- files and variables


def _home(home: Path | None) -> Path:
    if home is not None:
        return home
    # Imported here rather than at the top: `conversation` pulls in locking, signals and temp files,
    # none of which a price lookup needs.
    from agent_proc.conversation import agent_home

    return agent_home()


@functools.cache
def _shipped() -> _Table:
    where = f"shipped price table {SHIPPED_FILE}"
    doc = _read_file(SHIPPED_FILE, where)
    if doc is None:
        raise PricingError(f"{where}: missing (the package is not installed completely)")
    return _dated_table(doc, where, "table")


def _updated(home: Path) -> _Table | None:
    path = home / UPDATED_FILE
    where = f"updated price table {path}"
    doc = _read_private_file(path, where)
    return None if doc is None else _dated_table(doc, where, "updated table")


def _dated_table(doc: Any, where: str, kind: str) -> _Table:
    _check_document(doc, where)
    taken_on = str(doc.get("taken_on", ""))
    return _Table(raw=doc["models"], where=where, label=f"{kind} (taken_on {taken_on})", taken_on=taken_on,
                  source=str(doc.get("source", "")))


def _tables(home: Path) -> list[_Table]:
    """The tables a model is looked up in, the one that wins first: the user's (parsed whole, so a
    mistake in it is reported at once), the updated one, the shipped one."""
    tables = [_shipped()]
    if (updated := _updated(home)) is not None:
        tables.insert(0, updated)
    path = home / OVERRIDE_FILE
    where = f"price override file {path}"
    doc = _read_private_file(path, where)
    if doc is not None:
        own = _parse_models(doc, where, source=f"override file {path}")
        tables.insert(0, _Table(raw=doc["models"], where=where, label="", taken_on="", source="", parsed=own))
    return tables


def _look_up(tables: list[_Table], name: str) -> Model | None:
    for table in tables:
        if (found := table.get(name)) is not None:
            return found
    return None


def _read_file(path: Path, where: str) -> Any:
    """The JSON document in `path`, or None if there is no such file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PricingError(f"{where}: cannot be read ({e.strerror or e})") from e
    try:
        return json.loads(data)
    except ValueError as e:
        raise PricingError(f"{where}: not valid JSON ({e})") from e


def _read_private_file(path: Path, where: str) -> Any:
    """Like `_read_file`, for a file in $AGENT_HOME: never through a symbolic link, and
    only if no other user could have written it (it sets what --max-cost trusts)."""
    from agent_proc.conversation import ConversationError, read_private_file

    try:
        data = read_private_file(path)
    except FileNotFoundError:
        return None
    except ConversationError as e:
        raise PricingError(f"{where}: {e}") from None
    except OSError as e:
        raise PricingError(f"{where}: cannot be read ({e.strerror or e})") from e
    try:
        return json.loads(data)
    except ValueError as e:
        raise PricingError(f"{where}: not valid JSON ({e})") from e


def _parse_models(doc: Any, where: str, *, source: str) -> dict[str, Model]:
    _check_document(doc, where)
    models: dict[str, Any] = doc["models"]
    return {name: _parse_entry(name, entry, f"{where}: model {name!r}", source) for name, entry in models.items()}


def _check_document(doc: Any, where: str) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise PricingError(f'{where}: expected a JSON object with a "models" object in it')
    if doc.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise PricingError(f"{where}: schema_version {doc['schema_version']!r} is not supported "
                           f"(expected {SCHEMA_VERSION})")
    # Per-token prices in a per-million file would be off a million times without a word, so a unit is checked.
    if doc.get("unit", UNIT) != UNIT:
        raise PricingError(f"{where}: unit must be {UNIT!r}, not {doc['unit']!r}")


def _parse_entry(name: str, entry: Any, where: str, source: str) -> Model:
    if "/" not in name:
        raise PricingError(f"{where}: model names are written provider/model, e.g. openai/gpt-4o")
    if not isinstance(entry, dict):
        raise PricingError(f'{where}: expected an object such as {{"input": 2.5, "output": 10.0}}')
    # A misspelt field such as "cache_read" would otherwise be dropped and those tokens priced as plain input.
    known = (*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS, *_INFO_FIELDS)
    unknown = sorted(set(entry) - set(known))
    if unknown:
        raise PricingError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(known)})")
    per_token: dict[str, float] = {}
    for field in (*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS):
        value = entry.get(field)
        if value is None and field in _OPTIONAL_FIELDS:
            continue
        if value is None:
            raise PricingError(f'{where}: no "{field}" price')
        if not _is_price(value):
            raise PricingError(f"{where}: {field} must be a number >= 0 in {UNIT}, not {value!r}")
        per_token[field] = value / _TOKENS_PER_MILLION
    return Model(price=Price(**per_token, source=source), info=_parse_info(entry, where))


def _parse_info(entry: dict[str, Any], where: str) -> ModelInfo:
    for field in ("context_window", "max_output_tokens"):
        value = entry.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PricingError(f"{where}: {field} must be a whole number of tokens, not {value!r}")
    for field in ("reasoning", "always_reasons", "responses_only"):
        if entry.get(field) is not None and not isinstance(entry[field], bool):
            raise PricingError(f"{where}: {field} must be true or false, not {entry[field]!r}")
    lists = {"efforts": EFFORT_LEVELS, "thinking": _THINKING_FORMS}
    for field, allowed in lists.items():
        value = entry.get(field)
        if value is not None and (not isinstance(value, list) or not set(value) <= set(allowed)):
            raise PricingError(f"{where}: {field} must be a list of {', '.join(allowed)}, not {value!r}")
    return ModelInfo(
        context_window=entry.get("context_window"),
        max_output_tokens=entry.get("max_output_tokens"),
        reasoning=entry.get("reasoning"),
        efforts=None if entry.get("efforts") is None else tuple(entry["efforts"]),
        thinking=None if entry.get("thinking") is None else tuple(entry["thinking"]),
        always_reasons=bool(entry.get("always_reasons")),
        responses_only=bool(entry.get("responses_only")),
    )


def _is_price(value: Any) -> bool:
    # JSON true is an int to Python, and json.loads accepts NaN and Infinity.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _price_from_env(environ: Mapping[str, str]) -> Price | None:
    # An empty variable counts as unset, since `VAR= agent ...` is how a shell clears one for a single command.
    given = {field: environ[variable] for field, variable in _ENV_VARIABLES.items() if environ.get(variable)}
    if not given:
        return None
    for field in _REQUIRED_FIELDS:
        if field not in given:
            present = _ENV_VARIABLES[next(iter(given))]
            raise PricingError(f"{_ENV_VARIABLES[field]} must be set too when {present} is "
                               f"(both {ENV_INPUT} and {ENV_OUTPUT}, in USD per token)")
    per_token = {field: _env_number(_ENV_VARIABLES[field], text) for field, text in given.items()}
    return Price(**per_token, source="environment")


def _env_number(variable: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PricingError(f"{variable}={text!r} is not a number (USD per token, e.g. 0.0000025)") from None
    if not math.isfinite(value) or value < 0:
        raise PricingError(f"{variable}={text!r} must be a finite number >= 0 (USD per token)")
    return value
