"""Structured logs of a run (JSON lines in the conversation's `log.jsonl`), and the
redaction that keeps secrets out of them and out of every recorded error.

A pipeline of small processors. The last one before rendering removes any secret
that found its way into an event, whatever field it hides in, in whatever form an
error message may quote it (as is, trimmed, or escaped as Python or JSON would).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

if TYPE_CHECKING:
    import structlog

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4  # shorter strings would blank out ordinary words


def secret_forms(secrets: Iterable[str | None]) -> tuple[str, ...]:
    """Every form in which each secret may show up in a message, longest first.

    An error about a header quotes its value with repr() (`'sk-…\\r\\n'`); a JSON
    document escapes it; a URL percent-encodes it.
    """
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        for value in {secret, secret.strip()}:
            forms |= {value, repr(value)[1:-1], json.dumps(value)[1:-1], quote(value, safe="")}
    return tuple(sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True))


def redact_text(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every form of each secret replaced."""
    return redact(text, secret_forms(secrets))


def redact(value: Any, forms: tuple[str, ...]) -> Any:
    """`value` with every occurrence of each form replaced, through lists and dicts."""
    if isinstance(value, str):
        for form in forms:
            value = value.replace(form, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: redact(v, forms) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, forms) for v in value]
    return value


def redactor(secrets: Iterable[str | None]) -> structlog.types.Processor:
    """A processor that scrubs the given secrets (ignoring empty ones) from every event."""
    forms = secret_forms(secrets)

    def processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return redact(event_dict, forms) if forms else event_dict

    return processor


def configure(log_path: Path, secrets: Iterable[str | None]) -> TextIO:
    """Send structlog output of this process to `log_path` as JSON lines; return the file."""
    import structlog

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
