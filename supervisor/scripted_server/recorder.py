"""The record of everything that happened on the wire, for tests to assert on."""

from __future__ import annotations

import copy
import json
import threading
import time
from typing import Any


class Recorder:
    """Thread-safe event list, mirrored to a JSON-lines file when asked."""

    def __init__(self, log_path: str | None) -> None:
        self._events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._log_path = log_path
        if log_path:
            # Fail at start, not on the first request, when the file cannot be written.
            with open(log_path, "a", encoding="utf-8"):
                pass

    def record(self, event: str, **fields: Any) -> None:
        entry = {"event": event, **fields, "t": time.time()}
        with self._changed:
            self._events.append(entry)
            if self._log_path:
                # Reopened per line so that readers tailing the file see every line at once.
                with open(self._log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(entry) + "\n")
            self._changed.notify_all()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._changed:
            return copy.deepcopy(self._events)

    def wait_for(self, event: str, n: int | None, timeout: float) -> dict[str, Any] | None:
        def find() -> dict[str, Any] | None:
            for entry in self._events:
                if entry["event"] == event and (n is None or entry.get("n") == n):
                    return entry
            return None

        with self._changed:
            found = self._changed.wait_for(find, timeout)
            return copy.deepcopy(found)
