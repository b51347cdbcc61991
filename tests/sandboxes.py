"""Whether the tests can make real bubblewrap sandboxes here, asked once.

A test that needs one calls `require_sandbox()`: it is skipped, with bwrap's own
reason, where no sandbox can be made, and fails instead under CI=true, where a
skipped sandbox test would hide a missing install step.
"""

from __future__ import annotations

import functools
import os
import tempfile

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

