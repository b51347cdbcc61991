"""Whether the tests can make real bubblewrap sandboxes here, asked once.

A test that needs one calls `require_sandbox()`: it is skipped, with bwrap's own
reason, where no sandbox can be made, and fails instead under CI=true, where a
skipped sandbox test would hide a missing install step. Also a bwrap that fails as
bwrap does where user namespaces are not allowed.
"""

from __future__ import annotations

import functools
import os
import stat
import tempfile
from pathlib import Path

import pytest

from agent_proc import sandbox


@functools.cache
def sandbox_problem() -> str | None:
    """Why no sandbox can be made on this machine, or None if one can."""
    with tempfile.TemporaryDirectory() as workspace:
        try:
            sandbox.check(sandbox.Policy("workspace", True, workspace, (), os.path.join(workspace, "home")))
        except sandbox.SandboxUnavailable as error:
            return str(error)
    return None


def require_sandbox() -> None:
    """Skip the calling test (fail it under CI=true) unless real sandboxes can be made here."""
    if (problem := sandbox_problem()) is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must be able to make bubblewrap sandboxes: {problem}")
    pytest.skip(f"no bubblewrap sandbox on this machine: {problem}")


FAKE_BWRAP = """#!/bin/sh
# What bwrap says where the kernel does not allow unprivileged user namespaces.
echo "bwrap: No permissions to create new namespace, likely because the kernel does not allow \
non-privileged user namespaces. On e.g. debian this can be enabled with \
'sysctl kernel.unprivileged_userns_clone=1'." >&2
exit 1
"""


def script(path: Path, text: str) -> str:
    """Write an executable script; return its path."""
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)
