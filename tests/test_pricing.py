"""Prices: the shipped table, dated snapshots, the user's override file, the environment, and costs."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from agent_proc.pricing import (
    Price,
    PricingError,
    cost_of,
    estimate_messages_tokens,
    estimate_tokens,
    find_price,
    load_table,
    table_info,
)

NO_ENV: dict[str, str] = {}
BOTH = {"LLM_INPUT_COST_PER_TOKEN": "0.000002", "LLM_OUTPUT_COST_PER_TOKEN": "0.000008"}

REQUIRED_MODELS = [
    *(f"openai/{m}" for m in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3",
                              "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano")),
    *(f"anthropic/{m}" for m in ("claude-opus-4-1", "claude-opus-4", "claude-sonnet-4", "claude-sonnet-4-5",
                                 "claude-3-7-sonnet", "claude-3-5-haiku", "claude-haiku-4-5", "claude-opus-4-5")),
]


def write_override(home: Path, doc: object) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "prices.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


# --------------------------------------------------------------------------- shipped table and lookup


def test_exact_name_is_priced_per_token_from_the_shipped_table(tmp_path):
    price = find_price("openai/gpt-4o", home=tmp_path, environ=NO_ENV)
    assert price is not None
    assert price.input == pytest.approx(2.5e-6) and price.output == pytest.approx(10e-6)
    assert price.cached_input == pytest.approx(1.25e-6) and price.cache_write is None
    assert price.source == f"table (taken_on {table_info()['taken_on']})"


@pytest.mark.parametrize("model, family", [
    ("openai/gpt-4o-2024-08-06", "openai/gpt-4o"),
    ("openai/gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini"),
    ("openai/gpt-4.1-mini-2025-04-14", "openai/gpt-4.1-mini"),
    ("anthropic/claude-sonnet-4-20250514", "anthropic/claude-sonnet-4"),
    ("anthropic/claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"),
    ("anthropic/claude-opus-4-1-20250805", "anthropic/claude-opus-4-1"),
    ("anthropic/claude-3-7-sonnet-latest", "anthropic/claude-3-7-sonnet"),
])
def test_dated_snapshot_costs_what_its_longest_family_name_costs(tmp_path, model, family):
    assert find_price(model, home=tmp_path, environ=NO_ENV) == find_price(family, home=tmp_path, environ=NO_ENV)


@pytest.mark.parametrize("model, not_priced_as", [
    ("openai/o1-pro", "openai/o1"), ("openai/o1-pro-2025-03-19", "openai/o1"), ("openai/o1-mini", "openai/o1"),
    ("openai/o3-pro", "openai/o3"), ("openai/gpt-5-pro", "openai/gpt-5"),
])
def test_variants_with_their_own_price_are_not_priced_as_their_family(tmp_path, model, not_priced_as):
    variant = find_price(model, home=tmp_path, environ=NO_ENV)
    assert variant is not None and variant != find_price(not_priced_as, home=tmp_path, environ=NO_ENV)


def test_gpt_4o_and_gpt_4o_mini_snapshots_are_not_confused(tmp_path):
    big = find_price("openai/gpt-4o-2024-08-06", home=tmp_path, environ=NO_ENV)
    mini = find_price("openai/gpt-4o-mini-2024-07-18", home=tmp_path, environ=NO_ENV)
    assert big is not None and mini is not None
    assert big.input == pytest.approx(2.5e-6) and mini.input == pytest.approx(0.15e-6)


@pytest.mark.parametrize("model", [
    "openai/no-such-model", "anthropic/claude-2", "openai/gpt-4", "openai/gpt-4omni", "gpt-4o", "mistral/gpt-4o",
])
def test_unknown_model_has_no_price(tmp_path, model):
    assert find_price(model, home=tmp_path, environ=NO_ENV) is None


def test_every_model_the_project_relies_on_is_shipped(tmp_path):
    table = load_table(tmp_path)
    assert [m for m in REQUIRED_MODELS if m not in table] == []


def test_every_shipped_entry_is_plausible(tmp_path):
    table = load_table(tmp_path)
    for name, price in table.items():
        assert "/" in name, name
        assert price.input > 0 and price.output > 0, name
        assert price.output >= price.input, name
        assert price.cached_input is None or 0 < price.cached_input <= price.input, name
        assert price.cache_write is None or price.cache_write >= price.input, name


def test_table_info_says_when_and_where_from():
    info = table_info()
    assert set(info) == {"taken_on", "source"}
    date.fromisoformat(info["taken_on"])
    assert info["source"]


# --------------------------------------------------------------------------- override file


def test_missing_override_file_leaves_the_shipped_table(tmp_path):
    assert load_table(tmp_path / "does-not-exist") == load_table(tmp_path)


def test_override_file_replaces_and_extends(tmp_path):
    path = write_override(tmp_path, {"schema_version": 1, "unit": "USD per million tokens", "models": {
        "openai/gpt-4o": {"input": 1, "output": 2},
        "openai/my-local-model": {"input": 0, "output": 0, "cached_input": None},
        "anthropic/claude-house": {"input": 2, "output": 6, "cached_input": 0.2, "cache_write": 2.5},
    }})
    table = load_table(tmp_path)

    # A replaced model is replaced whole: its shipped cached price does not leak through.
    assert table["openai/gpt-4o"] == Price(input=1e-6, output=2e-6, source=f"override file {path}")
    assert table["openai/my-local-model"] == Price(input=0.0, output=0.0, source=f"override file {path}")
    house = table["anthropic/claude-house"]
    assert (house.cached_input, house.cache_write) == (pytest.approx(0.2e-6), pytest.approx(2.5e-6))
    assert table["openai/gpt-4o-mini"].source.startswith("table (")

    # Snapshots of a replaced model follow the override too.
    snapshot = find_price("openai/gpt-4o-2024-08-06", home=tmp_path, environ=NO_ENV)
    assert snapshot is not None and snapshot.input == pytest.approx(1e-6)
    assert find_price("anthropic/claude-house-20260101", home=tmp_path, environ=NO_ENV) == house


def test_override_file_can_price_one_snapshot_apart_from_its_family(tmp_path):
    write_override(tmp_path, {"models": {"openai/gpt-4o-2024-05-13": {"input": 5, "output": 15}}})
    old = find_price("openai/gpt-4o-2024-05-13", home=tmp_path, environ=NO_ENV)
    new = find_price("openai/gpt-4o-2024-08-06", home=tmp_path, environ=NO_ENV)
    assert old is not None and new is not None
    assert old.input == pytest.approx(5e-6) and new.input == pytest.approx(2.5e-6)


def test_default_home_is_agent_home(tmp_path, monkeypatch):
    write_override(tmp_path, {"models": {"openai/from-agent-home": {"input": 1, "output": 1}}})
    monkeypatch.setenv("AGENT_HOME", str(tmp_path))
    assert "openai/from-agent-home" in load_table()
    assert find_price("openai/from-agent-home", environ=NO_ENV) is not None


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON"),
    ("[]", '"models" object'),
    ('{"models": []}', '"models" object'),
    ('{"schema_version": 2, "models": {}}', "schema_version 2"),
    ('{"unit": "USD per token", "models": {}}', "unit must be"),
    ('{"models": {"gpt-4o": {"input": 1, "output": 2}}}', "provider/model"),
    ('{"models": {"openai/x": [1, 2]}}', "expected an object"),
    ('{"models": {"openai/x": {"input": 1}}}', 'no "output" price'),
    ('{"models": {"openai/x": {"input": -1, "output": 2}}}', "input must be a number >= 0"),
    ('{"models": {"openai/x": {"input": "1", "output": 2}}}', "input must be a number >= 0"),
    ('{"models": {"openai/x": {"input": true, "output": 2}}}', "input must be a number >= 0"),
    ('{"models": {"openai/x": {"input": 1, "output": NaN}}}', "output must be a number >= 0"),
    ('{"models": {"openai/x": {"input": 1, "output": 2, "cache_read": 0.1}}}', "unknown field 'cache_read'"),
])
def test_invalid_override_file_is_an_error_naming_it(tmp_path, content, problem):
    path = write_override(tmp_path, content)
    with pytest.raises(PricingError) as caught:
        load_table(tmp_path)
    message = str(caught.value)
    assert str(path) in message and problem in message and "\n" not in message
    with pytest.raises(PricingError):
        find_price("openai/gpt-4o", home=tmp_path, environ=NO_ENV)


def test_unreadable_override_file_is_an_error_naming_it(tmp_path):
    (tmp_path / "prices.json").mkdir()
    with pytest.raises(PricingError, match="cannot be read") as caught:
        load_table(tmp_path)
    assert str(tmp_path / "prices.json") in str(caught.value)


# --------------------------------------------------------------------------- environment


def test_environment_overrides_every_table(tmp_path):
    write_override(tmp_path, {"models": {"openai/gpt-4o": {"input": 1, "output": 2}}})
    for model in ("openai/gpt-4o", "openai/unknown-to-any-table"):
        assert find_price(model, home=tmp_path, environ=BOTH) == Price(input=2e-6, output=8e-6, source="environment")


def test_environment_may_price_cache_reads_and_writes(tmp_path):
    environ = {**BOTH, "LLM_CACHED_INPUT_COST_PER_TOKEN": "2e-7", "LLM_CACHE_WRITE_COST_PER_TOKEN": "0.0000025"}
    price = find_price("openai/gpt-4o", home=tmp_path, environ=environ)
    assert price == Price(input=2e-6, output=8e-6, cached_input=2e-7, cache_write=2.5e-6, source="environment")


def test_empty_variables_count_as_unset(tmp_path):
    environ = {"LLM_INPUT_COST_PER_TOKEN": "", "LLM_OUTPUT_COST_PER_TOKEN": ""}
    price = find_price("openai/gpt-4o", home=tmp_path, environ=environ)
    assert price is not None and price.source.startswith("table (")


@pytest.mark.parametrize("environ, missing", [
    ({"LLM_INPUT_COST_PER_TOKEN": "0.000002"}, "LLM_OUTPUT_COST_PER_TOKEN"),
    ({"LLM_OUTPUT_COST_PER_TOKEN": "0.000008"}, "LLM_INPUT_COST_PER_TOKEN"),
    ({"LLM_CACHED_INPUT_COST_PER_TOKEN": "1e-7"}, "LLM_INPUT_COST_PER_TOKEN"),
])
def test_one_price_variable_without_the_other_is_an_error_naming_it(tmp_path, environ, missing):
    with pytest.raises(PricingError) as caught:
        find_price("openai/gpt-4o", home=tmp_path, environ=environ)
    assert str(caught.value).startswith(missing)


@pytest.mark.parametrize("variable", [
    "LLM_INPUT_COST_PER_TOKEN", "LLM_OUTPUT_COST_PER_TOKEN", "LLM_CACHED_INPUT_COST_PER_TOKEN",
    "LLM_CACHE_WRITE_COST_PER_TOKEN",
])
@pytest.mark.parametrize("bad", ["abc", "-0.000001", "nan", "inf", "$0.01"])
def test_bad_number_in_a_price_variable_is_an_error_naming_it(tmp_path, variable, bad):
    with pytest.raises(PricingError) as caught:
        find_price("openai/gpt-4o", home=tmp_path, environ={**BOTH, variable: bad})
    assert variable in str(caught.value)


# --------------------------------------------------------------------------- cost


def test_cost_prices_uncached_cached_written_and_output_tokens_apart():
    price = Price(input=3e-6, output=15e-6, cached_input=0.3e-6, cache_write=3.75e-6)
    usage = {"prompt_tokens": 10_000, "cached_tokens": 6_000, "cache_write_tokens": 2_000,
             "completion_tokens": 500, "reasoning_tokens": 200}
    # By hand: 2,000 uncached at $3/M = 0.006; 6,000 cached at $0.30/M = 0.0018;
    # 2,000 written at $3.75/M = 0.0075; 500 out (reasoning already in them) at $15/M = 0.0075.
    assert cost_of(usage, price) == pytest.approx(0.0228)


def test_cost_without_cache_prices_charges_cache_tokens_as_input():
    price = Price(input=1e-6, output=2e-6)
    usage = {"prompt_tokens": 10_000, "cached_tokens": 6_000, "cache_write_tokens": 2_000, "completion_tokens": 500}
    assert cost_of(usage, price) == pytest.approx(10_000 * 1e-6 + 500 * 2e-6)


def test_cost_of_plain_and_empty_usage():
    price = Price(input=2.5e-6, output=10e-6)
    assert cost_of({"prompt_tokens": 1_000, "completion_tokens": 100}, price) == pytest.approx(0.0035)
    assert cost_of({}, price) == 0.0


def test_cost_from_the_shipped_table(tmp_path):
    price = find_price("anthropic/claude-sonnet-4-5-20250929", home=tmp_path, environ=NO_ENV)
    assert price is not None
    usage = {"prompt_tokens": 1_000_000, "cached_tokens": 1_000_000, "completion_tokens": 0}
    assert cost_of(usage, price) == pytest.approx(0.30)


# --------------------------------------------------------------------------- estimates


@pytest.mark.parametrize("text, tokens", [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)])
def test_estimate_tokens_is_a_quarter_of_the_characters_rounded_up(text, tokens):
    assert estimate_tokens(text) == tokens


def test_estimate_messages_counts_contents_and_tool_call_arguments():
    messages = [
        {"role": "system", "content": "x" * 40},
        {"role": "user", "content": [{"type": "text", "text": "y" * 8}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "run", "arguments": '{"cmd": "ls -la"}'}},
        ]},
        {"role": "assistant", "content": "ok", "tool_calls": [{"id": "2", "name": "run", "arguments": "z" * 12}]},
        {"role": "tool", "tool_call_id": "1", "content": "z" * 9},
    ]
    assert estimate_messages_tokens(messages) == 10 + 2 + 5 + 1 + 3 + 3
    assert estimate_messages_tokens([]) == 0


def test_importing_pricing_stays_light():
    code = "import sys, agent_proc.pricing; print(sorted({'agent_proc.conversation', 'requests'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


def test_only_a_date_makes_a_snapshot_so_newer_models_stay_unknown(tmp_path):
    assert find_price("anthropic/claude-sonnet-4-5-20250929", home=tmp_path, environ={}) is not None
    assert find_price("openai/gpt-4o-latest", home=tmp_path, environ={}) is not None
    assert find_price("anthropic/claude-opus-4-6", home=tmp_path, environ={}) is None
