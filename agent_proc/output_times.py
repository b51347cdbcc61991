"""When each line of a run's output.log was written, for `agent logs --timestamps/--since`.

output.log stays plain text (what a person reads, what `tail -f` shows). Next to it,
`output.times` has one line per line of output the child printed through `say`:
`<byte offset where the line starts> <UTC time>`. The child appends the times before
the text, so a reader never finds a line without its time. Lines the child did not
print through `say` (a traceback) have no entry and take the time of the line before.
"""

from __future__ import annotations

import bisect
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

TIMES_FILE = "output.times"


class _Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.line_start = True  # whether the next byte written begins a line

    def note(self, text: str) -> None:
        """Record the start of each line that writing `text` to stderr begins."""
        if not text:
            return
        offset = os.fstat(sys.stderr.fileno()).st_size
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        starts = [offset] if self.line_start else []
        encoding = sys.stderr.encoding or "utf-8"
        position = 0
        for part in text.split("\n")[:-1]:
            position += len(part.encode(encoding, errors="replace")) + 1
            starts.append(offset + position)
        self.line_start = text.endswith("\n")
        if self.line_start:
            starts.pop()  # the line after the last newline begins with the next text
        if starts:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, "".join(f"{start} {now}\n" for start in starts).encode())
            finally:
                os.close(fd)


_recorder: _Recorder | None = None


def start(conv_dir: Path, output_file: str) -> None:
    """Record times from now on, if stderr is the conversation's output file."""
    global _recorder
    try:
        ours = os.path.samestat(os.fstat(sys.stderr.fileno()), os.stat(conv_dir / output_file))
    except (OSError, ValueError):
        ours = False
    if ours:
        _recorder = _Recorder(conv_dir / TIMES_FILE)
        _recorder.line_start = os.fstat(sys.stderr.fileno()).st_size == 0 or _ends_with_newline(conv_dir / output_file)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def note(text: str) -> None:
    """Called by the child before it writes `text` to stderr."""
    if _recorder is not None:
        _recorder.note(text)


class LineTimes:
    """The times of output.log's lines, read (and re-read as it grows) from output.times."""

    def __init__(self, conv_dir: Path) -> None:
        self.path = conv_dir / TIMES_FILE
        self.read_to = 0
        self.offsets: list[int] = []
        self.times: list[str] = []

    def refresh(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.read_to)
                data = f.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self.read_to += len(complete)
        for line in complete.decode("ascii", errors="replace").splitlines():
            offset, _, when = line.partition(" ")
            if offset.isdigit() and when:
                self.offsets.append(int(offset))
                self.times.append(when)

    def at(self, offset: int) -> str | None:
        """The time of the line that starts at (or contains) `offset`."""
        index = bisect.bisect_right(self.offsets, offset) - 1
        return self.times[index] if index >= 0 else None

    def first_offset_since(self, moment: str) -> int | None:
        """Where the first line written at or after `moment` (ISO, UTC) starts."""
        index = bisect.bisect_left(self.times, moment)
        return self.offsets[index] if index < len(self.times) else None
