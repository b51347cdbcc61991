"""Prices: the shipped table, dated snapshots, the user's override file, the environment, and costs."""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from agent_proc.price_source import SourceError, convert
from agent_proc.pricing import (
    Price,
    PricingError,
    cost_of,
    estimate_messages_tokens,
    estimate_tokens,
    find_model,
    find_price,
    load_table,
    table_info,
)

REPO = Path(__file__).resolve().parent.parent
NO_ENV: dict[str, str] = {}
BOTH = {"LLM_INPUT_COST_PER_TOKEN": "0.000002", "LLM_OUTPUT_COST_PER_TOKEN": "0.000008"}

# The current models of the three big providers; the table is LiteLLM's, so these must all be in it.
REQUIRED_MODELS = [
    *(f"openai/{m}" for m in ("gpt-5.2", "gpt-5.2-pro", "gpt-5.1", "gpt-5", "gpt-5-mini", "gpt-5-nano", "o3", "o3-pro",
                              "o4-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini")),
    *(f"anthropic/{m}" for m in ("claude-opus-4-7", "claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-5",
                                 "claude-sonnet-4-5", "claude-haiku-4-5")),
    *(f"gemini/{m}" for m in ("gemini-3.1-pro-preview", "gemini-3-flash-preview", "gemini-2.5-pro",
                              "gemini-2.5-flash", "gemini-2.5-flash-lite")),
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
    assert price.source == f"table (taken_on {table_info(tmp_path)['taken_on']})"


@pytest.mark.parametrize("model, family", [
    ("openai/gpt-4o-2099-08-06", "openai/gpt-4o"),
    ("openai/gpt-4o-mini-2099-07-18", "openai/gpt-4o-mini"),
    ("openai/gpt-5.2-2099-01-01", "openai/gpt-5.2"),
    ("anthropic/claude-opus-4-7-20990101", "anthropic/claude-opus-4-7"),
    ("anthropic/claude-sonnet-4-5-latest", "anthropic/claude-sonnet-4-5"),
])
def test_dated_snapshot_costs_what_its_longest_family_name_costs(tmp_path, model, family):
    assert model not in load_table(tmp_path)
    snapshot = find_price(model, home=tmp_path, environ=NO_ENV)
    assert snapshot is not None and snapshot == find_price(family, home=tmp_path, environ=NO_ENV)


@pytest.mark.parametrize("model, not_priced_as", [
    ("openai/o1-pro", "openai/o1"), ("openai/o1-pro-2025-03-19", "openai/o1"), ("openai/gpt-5.2-pro", "openai/gpt-5.2"),
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
    "openai/no-such-model", "anthropic/claude-2", "openai/gpt-4omni", "gpt-4o", "mistral/gpt-4o", "ollama/llama3",
])
def test_unknown_model_has_no_price(tmp_path, model):
    assert find_price(model, home=tmp_path, environ=NO_ENV) is None


def test_every_model_the_project_relies_on_is_shipped(tmp_path):
    table = load_table(tmp_path)
    assert [m for m in REQUIRED_MODELS if m not in table] == []


def test_every_shipped_entry_is_plausible(tmp_path):
    table = load_table(tmp_path)
    assert len(table) > 500
    for name, price in table.items():
        assert "/" in name, name
        # Free models exist (Google's Gemma), and free prompts (Perplexity's online models bill per request);
        # a priced prompt with a free answer would be an entry half written.
        assert price.output > 0 or price.input == price.output == 0, name
        assert price.output >= price.input, name
        assert price.cached_input is None or 0 < price.cached_input <= price.input, name
        if name.startswith("anthropic/"):  # the one provider that bills writing to the cache
            assert price.cache_write is not None and price.cache_write >= price.input, name


def test_gpt_5_2_is_priced_and_known_to_reason(tmp_path):
    model = find_model("openai/gpt-5.2", home=tmp_path, environ=NO_ENV)
    assert model is not None
    assert (model.price.input, model.price.output, model.price.cached_input) == (
        pytest.approx(1.75e-6), pytest.approx(14e-6), pytest.approx(0.175e-6))
    assert model.info.reasoning is True and model.info.context_window == 272_000
    assert "none" in model.info.efforts and "minimal" not in model.info.efforts
    plain = find_model("openai/gpt-4o", home=tmp_path, environ=NO_ENV)
    assert plain is not None and plain.info.reasoning is False


def test_table_info_says_when_and_where_from(tmp_path):
    info = table_info(tmp_path)
    assert set(info) == {"taken_on", "source", "file"}
    date.fromisoformat(info["taken_on"])
    assert "LiteLLM" in info["source"] and "litellm 1." in info["source"]
    assert info["file"].endswith("agent_proc/data/prices.json")


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
    snapshot = find_price("openai/gpt-4o-2099-08-06", home=tmp_path, environ=NO_ENV)
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
    ('{"models": {"openai/x": {"input": 1, "output": 2, "context_window": "1M"}}}', "context_window must be"),
    ('{"models": {"openai/x": {"input": 1, "output": 2, "reasoning": "yes"}}}', "reasoning must be true or false"),
    ('{"models": {"openai/x": {"input": 1, "output": 2, "efforts": ["turbo"]}}}', "efforts must be a list"),
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
    assert find_price("openai/gpt-5.2-latest", home=tmp_path, environ={}) is not None
    assert find_price("openai/gpt-5.2-ultra", home=tmp_path, environ={}) is None
    assert find_price("anthropic/claude-opus-4-7-1", home=tmp_path, environ={}) is None


# --------------------------------------------------------------------------- LiteLLM's table


LITELLM_SAMPLE = {
    "sample_spec": {"litellm_provider": "one of https://docs.litellm.ai/docs/providers", "mode": "chat"},
    "gpt-9": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2e-06,
              "output_cost_per_token": 1.6e-05, "cache_read_input_token_cost": 2e-07, "max_input_tokens": 400000,
              "max_output_tokens": 128000, "supports_reasoning": True, "supports_none_reasoning_effort": True,
              "supports_minimal_reasoning_effort": False, "supports_xhigh_reasoning_effort": True},
    "gpt-9-pro": {"litellm_provider": "openai", "mode": "responses", "input_cost_per_token": 2e-05,
                  "output_cost_per_token": 1.6e-04, "supports_reasoning": True},
    "claude-verse-9": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-06,
                       "output_cost_per_token": 1.5e-05, "cache_read_input_token_cost": 3e-07,
                       "cache_creation_input_token_cost": 3.75e-06, "supports_reasoning": True,
                       "supports_adaptive_thinking": True, "supports_legacy_thinking": True,
                       "supports_max_reasoning_effort": True},
    "gemini/gemini-9-pro": {"litellm_provider": "gemini", "mode": "chat", "input_cost_per_token": 1.25e-06,
                            "output_cost_per_token": 1e-05, "supports_reasoning": True},
    "deepseek-chat": {"litellm_provider": "deepseek", "mode": "chat", "input_cost_per_token": 9e-07,
                      "output_cost_per_token": 9e-07},
    "deepseek/deepseek-chat": {"litellm_provider": "deepseek", "mode": "chat", "input_cost_per_token": 2.8e-07,
                               "output_cost_per_token": 4.2e-07, "cache_read_input_token_cost": 2.8e-08,
                               "cache_creation_input_token_cost": 0.0},
    "text-embedding-9": {"litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 1e-07,
                         "output_cost_per_token": 0.0},
    "bedrock/claude-verse-9": {"litellm_provider": "bedrock", "mode": "chat", "input_cost_per_token": 3e-06,
                               "output_cost_per_token": 1.5e-05},
    "ollama/llama9": {"litellm_provider": "ollama", "mode": "chat", "input_cost_per_token": 0.0,
                      "output_cost_per_token": 0.0},
    "half-written": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06,
                     "output_cost_per_token": 0.0},
}


def test_litellm_table_becomes_our_table_for_our_hosted_providers():
    doc = convert(LITELLM_SAMPLE, taken_on="2026-01-02", source_note="sample")
    assert (doc["taken_on"], doc["source"], doc["unit"]) == ("2026-01-02", "sample", "USD per million tokens")
    assert list(doc["models"]) == sorted(["openai/gpt-9", "openai/gpt-9-pro", "anthropic/claude-verse-9",
                                          "gemini/gemini-9-pro", "deepseek/deepseek-chat"])
    assert doc["models"]["openai/gpt-9"] == {
        "input": 2.0, "output": 16.0, "cached_input": 0.2, "context_window": 400000, "max_output_tokens": 128000,
        "reasoning": True, "efforts": ["none", "low", "medium", "high", "xhigh"]}
    assert doc["models"]["openai/gpt-9-pro"]["responses_only"] is True
    assert "efforts" not in doc["models"]["openai/gpt-9-pro"]  # the table does not say: every level goes through
    claude = doc["models"]["anthropic/claude-verse-9"]
    assert claude["thinking"] == ["adaptive", "budget"] and claude["efforts"] == ["low", "medium", "high", "max"]
    # The provider's own (prefixed) entry wins over the unprefixed duplicate; a 0 cache price means "none".
    assert doc["models"]["deepseek/deepseek-chat"] == {"input": 0.28, "output": 0.42, "cached_input": 0.028,
                                                      "reasoning": False}


def test_a_table_without_our_models_is_refused():
    with pytest.raises(SourceError, match="no chat model"):
        convert({"bedrock/x": LITELLM_SAMPLE["bedrock/claude-verse-9"]}, taken_on="2026-01-02", source_note="")
    with pytest.raises(SourceError, match="not a JSON object"):
        convert([], taken_on="2026-01-02", source_note="")


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "update_prices.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_script_writes_the_price_file_from_a_json_copy_or_a_wheel(tmp_path):
    source = tmp_path / "model_prices_and_context_window_backup.json"
    source.write_text(json.dumps(LITELLM_SAMPLE))
    out = tmp_path / "prices.json"
    result = run_script(str(source), "--taken-on", "2026-03-04", "--version", "1.2.3", "-o", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert doc["taken_on"] == "2026-03-04" and "litellm 1.2.3" in doc["source"]
    assert "openai/gpt-9" in doc["models"] and "5 models" in result.stdout

    wheel = tmp_path / "litellm-9.8.7-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("litellm/model_prices_and_context_window_backup.json", json.dumps(LITELLM_SAMPLE))
        archive.writestr("litellm-9.8.7.dist-info/METADATA", "Metadata-Version: 2.4\nName: litellm\nVersion: 9.8.7\n")
    result = run_script(str(wheel), "-o", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert "litellm 9.8.7 from PyPI" in doc["source"] and doc["taken_on"] == date.today().isoformat()
    # The file it writes is one the table loader accepts.
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "prices.json").write_text(out.read_text())
    assert find_model("openai/gpt-9", home=tmp_path / "home", environ=NO_ENV).info.efforts[0] == "none"


def test_script_refuses_a_file_that_is_not_the_table(tmp_path):
    source = tmp_path / "other.json"
    source.write_text('{"hello": "world"}')
    result = run_script(str(source), "-o", str(tmp_path / "out.json"))
    assert result.returncode == 2 and "no chat model" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.json").exists()


@contextlib.contextmanager
def serving(body: bytes, status: int = 200) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 that answers every GET with `body`; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/model_prices_and_context_window.json"
    finally:
        server.shutdown()
        server.server_close()


def test_agent_models_lists_prices_context_reasoning_and_the_table_date(agent):
    result = agent("models", "gpt-5.2")
    assert result.returncode == 0, result.stderr
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith("openai/gpt-5.2 "))
    assert row[1:5] == ["1.75", "14", "0.175", "272k"] and row[5].startswith("yes")
    assert f"taken on {table_info(agent.home)['taken_on']}" in result.stdout
    listing = agent("models")
    assert "gemini" in listing.stdout and "GEMINI_API_KEY" in listing.stdout
    assert "anthropic/claude-opus-4-7" in listing.stdout
    doc = json.loads(agent("models", "--json").stdout)
    assert doc["prices"]["taken_on"] == table_info(agent.home)["taken_on"]
    assert next(m for m in doc["models"] if m["name"] == "openai/gpt-4o")["reasoning"] is False


def test_update_prices_fetches_the_current_table_and_overrides_still_win(agent):
    with serving(json.dumps(LITELLM_SAMPLE).encode()) as url:
        result = agent("models", "--update-prices", "gpt-9", env={"AGENT_PRICES_URL": url})
    assert result.returncode == 0, result.stderr
    assert "fetched 5 models" in result.stderr
    assert "openai/gpt-9 " in result.stdout and str(agent.home / "prices-updated.json") in result.stdout
    today = date.today().isoformat()
    assert table_info(agent.home)["taken_on"] == today and url in table_info(agent.home)["source"]
    assert find_price("openai/gpt-9", home=agent.home, environ=NO_ENV).source == f"updated table (taken_on {today})"
    # The shipped models stay; the fetched ones replace or extend them.
    assert find_price("openai/gpt-4o", home=agent.home, environ=NO_ENV) is not None
    # The user's own file, and the environment, still win.
    write_override(agent.home, {"models": {"openai/gpt-9": {"input": 1, "output": 1}}})
    assert find_price("openai/gpt-9", home=agent.home, environ=NO_ENV).input == pytest.approx(1e-6)
    assert find_price("openai/gpt-9", home=agent.home, environ=BOTH).source == "environment"


@pytest.mark.parametrize("url_kind", ["offline", "http_error", "not_json"])
def test_update_prices_failure_is_one_line_and_keeps_the_old_table(agent, url_kind):
    if url_kind == "offline":
        with serving(b"") as url:  # a port that was just closed again: nothing listens there any more
            pass
        result = agent("models", "--update-prices", env={"AGENT_PRICES_URL": url})
        expected = "offline?"
    else:
        body, status = (b"gone", 404) if url_kind == "http_error" else (b"<html>", 200)
        with serving(body, status) as url:
            result = agent("models", "--update-prices", env={"AGENT_PRICES_URL": url})
        expected = "HTTP 404" if url_kind == "http_error" else "not valid JSON"
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert expected in result.stderr and url in result.stderr
    assert not (agent.home / "prices-updated.json").exists()
