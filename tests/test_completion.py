"""`agent completion SHELL`: the script, and ids completing in a real bash."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from agent_proc import conversation
from tests.conftest import agent_on_path


@pytest.mark.parametrize(("shell", "expected"), [
    ("bash", "complete -o nosort -F _agent_completion agent"),
    ("zsh", "#compdef agent"),
    ("fish", "complete --no-files --command agent"),
])
def test_completion_prints_the_script(agent, shell, expected):
    result = agent("completion", shell)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout and "_AGENT_COMPLETE" in result.stdout


def test_bash_completes_commands_and_conversation_ids(agent, tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    made = [conversation.create(model="openai/x", workspace=str(agent.workspace), base_url=None, prompt="p",
                                home=agent.home).name for _ in range(3)]
    path = agent_on_path(tmp_path / "bin")
    script = agent("completion", "bash").stdout

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        program = (f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _agent_completion agent; "
                   'printf "%s\\n" "${COMPREPLY[@]}"')
        env = {**agent.env, "PATH": path}
        result = subprocess.run([bash, "-c", program], capture_output=True, text=True, env=env, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert "export" in complete("agent exp")
    assert sorted(complete("agent show ")) == sorted(made)
    assert complete(f"agent resume {made[0][:6]}") == [made[0]]
    assert sorted(complete(f"agent rm {made[1]} ")) == sorted(made)
