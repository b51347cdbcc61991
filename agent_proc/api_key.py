"""How the API key reaches the run's child without ever being in an environment.

The supervisor chooses the key (`providers.find_api_key`), writes it into a pipe and
starts the child with the pipe's read end open and its number in `AGENT_KEY_FD`, and
with no key variable in its environment. The child reads the key once, at start, and
closes the descriptor. So `/proc/<child>/environ` never holds it, and neither does the
environment any tool inherits. The watcher of a detached run receives it the same way.

A process that holds the key also makes itself non-dumpable: other processes of the
same (non-root) user can then no longer read its memory or its `/proc` files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

KEY_FD_ENV = "AGENT_KEY_FD"


def pipe_with(key: str | None) -> int | None:
    """A pipe that holds `key`; returns its read end (inheritable), or None without a key."""
    if not key:
        return None
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, key.encode())  # a key is far smaller than a pipe's buffer: this never blocks
    finally:
        os.close(write_end)
    os.set_inheritable(read_end, True)
    return read_end


def child_environment(env: dict[str, str], key_fd: int | None) -> dict[str, str]:
    """`env` as a process started with `pipe_with`'s descriptor should get it: no key variable."""
    from agent_proc.providers import SECRET_ENV_NAMES

    out = {k: v for k, v in env.items() if k not in SECRET_ENV_NAMES and k != KEY_FD_ENV}
    if key_fd is not None:
        out[KEY_FD_ENV] = str(key_fd)
    return out


def receive() -> str | None:
    """In the started process: read the key from the inherited pipe, once, and close it."""
    number = os.environ.pop(KEY_FD_ENV, None)
    if not number:
        return None
    fd = int(number)
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return b"".join(chunks).decode() or None


def keep_memory_private() -> None:
    """PR_SET_DUMPABLE 0: no core dump, and no ptrace or /proc/<pid>/mem or environ reads by
    processes of the same user. Root (CAP_SYS_PTRACE) can still read them."""
    if sys.platform.startswith("linux"):
        PR_SET_DUMPABLE = 4
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
