"""Structured logs of a run: JSON lines in the conversation's `log.jsonl`.

A pipeline of small processors. The last one before rendering removes any secret
that found its way into an event, whatever field it hides in.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"


def redact(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` with every occurrence of each secret replaced, through lists and dicts."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secrets) for v in value]
    return value


def redactor(secrets: Iterable[str | None]) -> structlog.types.Processor:
    """A processor that scrubs the given secrets (ignoring empty ones) from every event."""
    kept = tuple(s for s in secrets if s and len(s) >= 4)

    def processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return redact(event_dict, kept) if kept else event_dict

    return processor


def configure(log_path: Path, secrets: Iterable[str | None]) -> TextIO:
    """Send structlog output of this process to `log_path` as JSON lines; return the file."""
    # Line-buffered, so each event lands whole; stays open for the life of the process.
    from agent_proc.conversation import open_fd

    fd = open_fd(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    stream = open(fd, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor(secrets),
            structlog.processors.JSONRenderer(default=str),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    return stream
