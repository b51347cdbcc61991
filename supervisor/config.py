"""Defaults for run options from `$AGENT_HOME/config.toml`, and `agent config`.

A value is taken from, in order: the flag, the environment, the config file, the
built-in default. `KEYS` is the one table that says which config key gives a default
to which option, and which environment variable comes before it; giving a new option
a config key is one line there. Values are checked with the option's own click type,
so the file accepts exactly what the flag accepts.

The file is flat TOML (`model = "openai/gpt-4o"`, `max_cost = 0.5`). It never holds
an API key: keys come from the environment only, and a key-like entry is refused.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from agent_proc import conversation

CONFIG_FILE = "config.toml"


class ConfigError(ValueError):
    """A config file or a `agent config` request that cannot be used, in one line."""


def _model_name(value: str) -> None:
    from agent_proc.providers import ModelNameError, parse_model

    try:
        parse_model(value)
    except ModelNameError as e:
        raise click.BadParameter(str(e)) from None


def _url(value: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise click.BadParameter("must start with http:// or https://")


@dataclass(frozen=True)
class Key:
    name: str  # in config.toml
    env: str | None  # the environment variable that comes before the file, if there is one
    param: str  # the option it gives a default to (the click parameter's name)
    commands: tuple[str, ...] = ("run",)  # the commands whose option it is
    check: Callable[[Any], None] | None = None  # what the option's click type does not check


KEYS: dict[str, Key] = {key.name: key for key in (
    Key("model", "LLM_MODEL", "model", check=_model_name),
    Key("base_url", "LLM_BASE_URL", "base_url", check=_url),
    Key("max_iterations", None, "max_iterations"),
    Key("tool_timeout", None, "tool_timeout"),
    Key("llm_timeout", None, "llm_timeout"),
    Key("idle_timeout", None, "idle_timeout"),
    Key("on_timeout", None, "on_timeout"),
    Key("timeout", None, "run_timeout"),
    Key("max_cost", None, "max_cost"),
    Key("stream", None, "stream"),
    Key("reasoning_effort", "LLM_REASONING_EFFORT", "reasoning_effort"),
    Key("thinking_budget", "LLM_THINKING_BUDGET", "thinking_budget"),
    Key("api", "LLM_API", "api"),
    Key("sandbox", "AGENT_SANDBOX", "sandbox"),
    Key("network", "AGENT_NETWORK", "network"),
    Key("grace", None, "grace", ("run", "resume")),  # not `interrupt`: a broken file must not stop a stop
    Key("backend", "AGENT_BACKEND", "backend"),  # not `resume`: it goes where the run last ran
)}

_BY_PARAM: dict[tuple[str, str], Key] = {(command, key.param): key for key in KEYS.values() for command in key.commands}

# Names that look like they hold a secret. Keys come from the environment only.
_SECRET = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd|credentials?)$", re.IGNORECASE)


def path() -> Path:
    return conversation.agent_home() / CONFIG_FILE


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 has the same parser as the `tomli` package
        import tomli as tomllib
    return tomllib


def check_name(name: str) -> Key:
    """The `Key` called `name`; a secret-looking or unknown name is a `ConfigError`."""
    if _SECRET.search(name):
        raise ConfigError(f"{path()}: {name!r} looks like a secret: remove it. API keys are read from the "
                          "environment only (LLM_API_KEY or the provider's variable), never from a file")
    if name not in KEYS:
        raise ConfigError(f"{path()}: unknown key {name!r}; known keys: {', '.join(KEYS)}")
    return KEYS[name]


@functools.lru_cache(maxsize=4)
def _read(file: Path) -> dict[str, Any]:
    text = load_text(file)
    try:
        doc = _toml().loads(text)
    except ValueError as e:  # tomllib.TOMLDecodeError
        raise ConfigError(f"{file}: not valid TOML: {e}") from None
    for name, value in doc.items():
        check_name(name)
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{file}: {name} must be a single value, not a table or a list")
    return doc


def load_text(file: Path) -> str:
    """The config file's text ("" if there is none), under the rules of `_read`."""
    try:
        return conversation.read_private_file(file).decode("utf-8")
    except FileNotFoundError:
        return ""
    except conversation.ConversationError as e:
        raise ConfigError(str(e)) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}: not UTF-8 text: {e}") from None


def load() -> dict[str, Any]:
    """The config file's entries (none if there is no file); raises `ConfigError`."""
    return _read(path())


def convert(key: Key, value: Any, command: click.Command, source: str) -> Any:
    """`value` (found in `source`) checked and converted by the click type of the option
    `key` sets."""
    param = _param(key, command)
    try:
        converted = param.type.convert(value, param, None)
        if key.check:
            key.check(converted)
        return converted
    except click.BadParameter as e:
        raise ConfigError(f"{source}: {key.name} = {value!r}: {e.message}") from None


def _param(key: Key, command: click.Command) -> click.Parameter:
    for param in command.params:
        if param.name == key.param:
            return param
    raise ConfigError(f"{key.name}: `agent {command.name}` has no option {key.param!r}")  # a wrong row in KEYS


def default_for(command: click.Command, param_name: str | None) -> Any | None:
    """The default of an option that the flag left out: the environment variable, else
    the config file, else None (the built-in default applies)."""
    key = _BY_PARAM.get((command.name or "", param_name or ""))
    if key is None:
        return None
    if key.env and os.environ.get(key.env):
        return os.environ[key.env]  # click converts it, as it would a flag
    value = load().get(key.name)
    return None if value is None else convert(key, value, command, str(path()))


def describe(run: click.Command) -> list[tuple[str, Any, str]]:
    """Every key with the value a run would get without a flag, and where it comes from."""
    from agent_proc.conversation import Settings

    built_in = {f.name: f.default for f in fields(Settings)}
    doc = load()
    rows = []
    for key in KEYS.values():
        param = _param(key, run) if "run" in key.commands else None
        if key.env and os.environ.get(key.env):
            rows.append((key.name, os.environ[key.env], f"env {key.env}"))
        elif key.name in doc:  # checked, so that a wrong value is reported here rather than at the next run
            value = convert(key, doc[key.name], run, str(path())) if param is not None else doc[key.name]
            rows.append((key.name, value, "config"))
        else:
            default = param.default if param is not None else None
            if not isinstance(default, (bool, int, float, str)):  # None, or click's "not given"
                default = built_in.get(key.param)
            rows.append((key.name, default, "built-in"))
    return rows


# --------------------------------------------------------------------------- writing


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{value} is not a usable value")
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _line(name: str) -> re.Pattern[str]:
    return re.compile(rf"^[ \t]*{re.escape(name)}[ \t]*=.*(\n|$)", re.MULTILINE)


def _rewrite(name: str, new_line: str, expected: Mapping[str, Any]) -> None:
    """Replace (or add, or with "" remove) the line of `name`, keeping every other line
    and comment; the result must parse to `expected` or nothing is written."""
    file = path()
    text = load_text(file)
    pattern = _line(name)
    if pattern.search(text):
        text = pattern.sub(lambda _: new_line, text, count=1)
    elif new_line:
        text = text + ("" if not text or text.endswith("\n") else "\n") + new_line
    try:
        result = _toml().loads(text)
    except ValueError:
        result = None
    if result != dict(expected):
        raise ConfigError(f"{file}: could not change {name} without disturbing the rest; edit the file by hand")
    conversation.make_private_dir(file.parent)
    conversation.write_atomic(file, text.encode())  # a private temporary file (0600), renamed
    _read.cache_clear()


def set_value(name: str, text: str, run: click.Command) -> Any:
    """Set `name` to `text` (checked like the flag would be); return the stored value."""
    key = check_name(name)
    value = convert(key, text, run, "agent config set")
    _rewrite(name, f"{name} = {_toml_value(value)}\n", {**load(), name: value})
    return value


def unset(name: str) -> bool:
    """Remove `name` from the file; whether it was there."""
    check_name(name)
    doc = load()
    if name not in doc:
        return False
    _rewrite(name, "", {k: v for k, v in doc.items() if k != name})
    return True
