"""The README's first command: `agent demo`, with no key and no network."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.sandboxes import require_sandbox


def test_demo_runs_interrupts_resumes_and_writes_the_answer(agent, tmp_path):
    require_sandbox()  # the demo runs sandboxed, as every run does by default
    work = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "supervisor", "demo", "--seconds", "2", "-w", str(work)],
                            capture_output=True, text=True, timeout=120, env=agent.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopped in" in result.stdout
    assert "sandbox:     workspace, network on" in result.stdout
    assert "the server saw the client hang up: yes" in result.stdout
    assert "PARTIAL: interrupted" in result.stdout
    # The interrupt lands in the model's reasoning, which is kept and priced.
    assert "reasoning (cut off): Working through the clues" in result.stdout
    assert re.search(r"cost \$0\.0*[1-9]\d* \(estimated\)", result.stdout), result.stdout
    assert (work / "puzzle_solution.txt").read_text().startswith("The German owns the fish")
    assert "Demo complete" in result.stdout
