"""The script format: what each step of a scripted server says the "model" does.

A script is ``{"steps": [step, ...], "when_exhausted": "error" | "repeat_last"}``;
see the package docstring for the step keys. Loading checks every key, because a
misspelt key would otherwise silently script the wrong behaviour.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any


class ScriptError(ValueError):
    """The script document is malformed; the message says where."""


_STEP_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "content": (str,),
    "reasoning": (str,),
    "redacted_thinking": (bool,),
    "tool_calls": (list,),
    "chunk_chars": (int,),
    "chunk_delay": (int, float),
    "delay": (int, float),
    "status": (int,),
    "error": (str,),
    "headers": (dict,),
    "hang": (bool,),
    "hang_after_chunks": (int,),
    "drop": (bool,),
    "drop_after_chunks": (int,),
    "malformed": (bool,),
    "usage": (dict,),
    "expect_api_key": (str,),
    "truncated": (bool,),
    "omit_tool_ids": (bool,),
    "stream_error": (str,),
    "whole_answer": (bool,),
    "raw_body": (str,),
    "content_type": (str,),
    "chunk_bytes": (int,),
    "split_surrogates": (bool,),
}
_NON_NEGATIVE_FIELDS = ("chunk_delay", "delay", "hang_after_chunks", "drop_after_chunks")
_USAGE_KEYS = frozenset({"prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"})
_TOOL_CALL_KEYS = frozenset({"name", "arguments", "id", "raw_arguments"})


def load_script(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a script file; raise ScriptError with a one-line reason."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise ScriptError(f"cannot read script {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ScriptError(f"script {path} is not valid JSON: {exc}") from exc
    try:
        return validate_script(document)
    except ScriptError as exc:
        raise ScriptError(f"script {path}: {exc}") from exc


def validate_script(script: Any) -> dict[str, Any]:
    """Check a script document and return a copy with defaults filled in.

    Raises ScriptError naming the first problem found. Unknown keys are errors,
    because a misspelt key would otherwise silently script the wrong behaviour.
    """
    if not isinstance(script, dict):
        raise ScriptError("the script must be a JSON object with a 'steps' list")
    unknown = sorted(set(script) - {"steps", "when_exhausted"})
    if unknown:
        raise ScriptError(f"unknown top-level key(s): {', '.join(unknown)}")
    steps = script.get("steps")
    if not isinstance(steps, list):
        raise ScriptError("'steps' must be a list")
    when_exhausted = script.get("when_exhausted", "error")
    if when_exhausted not in ("error", "repeat_last"):
        raise ScriptError("'when_exhausted' must be 'error' or 'repeat_last'")
    for index, step in enumerate(steps):
        _check_step(f"step {index}", step)
    return {"steps": copy.deepcopy(steps), "when_exhausted": when_exhausted}


def _check_step(where: str, step: Any) -> None:
    if not isinstance(step, dict):
        raise ScriptError(f"{where}: must be an object")
    for key, value in step.items():
        expected = _STEP_FIELD_TYPES.get(key)
        if expected is None:
            raise ScriptError(f"{where}: unknown key {key!r}")
        # bool is a subclass of int, yet `"delay": true` is surely a mistake.
        wrong_bool = isinstance(value, bool) and bool not in expected
        if wrong_bool or not isinstance(value, expected):
            names = " or ".join(kind.__name__ for kind in expected)
            raise ScriptError(f"{where}: {key!r} must be of type {names}")
    for key in _NON_NEGATIVE_FIELDS:
        if step.get(key, 0) < 0:
            raise ScriptError(f"{where}: {key!r} must not be negative")
    for key in ("chunk_chars", "chunk_bytes"):
        if step.get(key, 1) < 1:
            raise ScriptError(f"{where}: {key!r} must be at least 1")
    if not 100 <= step.get("status", 200) <= 599:
        raise ScriptError(f"{where}: 'status' must be an HTTP status code")
    for name, value in step.get("headers", {}).items():
        if not isinstance(value, str):
            raise ScriptError(f"{where}: header {name!r} must have a string value")
    for name, value in step.get("usage", {}).items():
        if name not in _USAGE_KEYS:
            raise ScriptError(f"{where}: unknown usage key {name!r}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ScriptError(f"{where}: usage {name!r} must be a non-negative integer")
    for number, call in enumerate(step.get("tool_calls", [])):
        _check_tool_call(f"{where}: tool call {number}", call)


def _check_tool_call(where: str, call: Any) -> None:
    if not isinstance(call, dict):
        raise ScriptError(f"{where}: must be an object")
    unknown = sorted(set(call) - _TOOL_CALL_KEYS)
    if unknown:
        raise ScriptError(f"{where}: unknown key(s): {', '.join(unknown)}")
    if not isinstance(call.get("name"), str) or not call["name"]:
        raise ScriptError(f"{where}: 'name' must be a non-empty string")
    if not isinstance(call.get("arguments", {}), dict):
        raise ScriptError(f"{where}: 'arguments' must be an object")
    for key in ("id", "raw_arguments"):
        if not isinstance(call.get(key, ""), str):
            raise ScriptError(f"{where}: {key!r} must be a string")
