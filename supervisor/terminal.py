"""Writing for people: what reaches a terminal is shown, never obeyed.

Model text, tool output and server messages can carry control sequences (OSC 52
writes the clipboard, `ESC[2J` clears the screen, `\\r` overwrites what was read).
On a terminal every control character other than newline and tab is shown escaped
(`\\x1b`, `\\r`), and bytes that are not UTF-8 as `\\xff`; files, pipes and --json get
the exact text. A reader that goes away (`| head`) silences the stream instead of
failing the command or the run.
"""

from __future__ import annotations

import codecs
import os
import re
import sys
from typing import Any, BinaryIO, TextIO

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` with every control character but newline and tab made visible."""
    return _CONTROL.sub(_shown, text)


def is_terminal(stream: TextIO | BinaryIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError):  # closed
        return False


def use_colour(stream: TextIO | BinaryIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return is_terminal(stream) and not os.environ.get("NO_COLOR")


def silence(stream: TextIO | BinaryIO) -> None:
    """Point the stream's descriptor at /dev/null: its reader went away, and what is
    still buffered or written later must not fail (nor change the exit code)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def echo(text: str, *, err: bool = False) -> None:
    """Print a line for people: escaped on a terminal, exact elsewhere."""
    stream = sys.stderr if err else sys.stdout
    try:
        stream.write((escape(text) if is_terminal(stream) else text) + "\n")
        stream.flush()
    except BrokenPipeError:
        silence(stream)


class Display:
    """A stream that shows a run's output (bytes, as written to output.log) and the
    supervisor's own status lines, which always start on a line of their own."""

    def __init__(self, stream: BinaryIO | Any | None, *, escaping: bool | None = None) -> None:
        self.stream = stream
        # `escaping` for a stream that wraps a terminal but cannot say so itself
        self.escaping = stream is not None and (is_terminal(stream) if escaping is None else escaping)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
        self.at_line_start = True

    def write(self, data: bytes) -> None:
        """Output of the run, as it was written."""
        if self.escaping:  # a character split across two writes is decoded whole
            data = escape(self.decoder.decode(data)).encode()
        self._put(data)

    def line(self, text: str) -> None:
        """A status line (`[agent] ...`), on a new line whatever the run printed last."""
        shown = escape(text) if self.escaping else text
        self._put((b"" if self.at_line_start else b"\n") + shown.encode(errors="backslashreplace") + b"\n")

    def _put(self, data: bytes) -> None:
        if not data or self.stream is None:
            return
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError:
            silence(self.stream)
            self.stream = None
            return
        self.at_line_start = data.endswith(b"\n")
