"""The recipes of docs/ci.md, run as written against the scripted model server.

The commands are read out of the document (the YAML parsed as a runner parses it),
so the recipes cannot drift from what is tested. The runner's cancel is played with
real signals to the step's process.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_proc import conversation
from tests.conftest import REPO, Agent, agent_on_path, finish, slow_text, wait_until

DOC = (REPO / "docs" / "ci.md").read_text()
PRICED = {"LLM_INPUT_COST_PER_TOKEN": "0.000001", "LLM_OUTPUT_COST_PER_TOKEN": "0.000002"}


def yaml_blocks() -> list[Any]:
    return [yaml.safe_load(text) for text in re.findall(r"```yaml\n(.*?)```", DOC, re.DOTALL)]


def github_steps() -> dict[str, str]:
    steps = yaml_blocks()[0]["jobs"]["agent"]["steps"]
    return {step["name"]: step["run"] for step in steps if "run" in step}


def cron_commands() -> list[str]:
    [table] = re.findall(r"```cron\n(.*?)```", DOC, re.DOTALL)
    return [line.split(None, 5)[5] for line in table.splitlines() if line.strip() and not line.startswith("#")]


class Job:
    """A CI job's machine: a fresh AGENT_HOME, `agent` on the PATH, the model played
    by the scripted server, and the job's working directory."""

    def __init__(self, tmp_path: Path, agent: Any, server: Any) -> None:
        self.dir = tmp_path / "job"
        self.dir.mkdir()
        self.home = tmp_path / "agent-home"
        self.summary = tmp_path / "step-summary.md"
        self.env = {**agent.env, **PRICED, "AGENT_HOME": str(self.home), "HOME": str(tmp_path),
                    "PATH": agent_on_path(tmp_path / "bin"), "LLM_MODEL": "openai/scripted",
                    "LLM_BASE_URL": server.url, "GITHUB_STEP_SUMMARY": str(self.summary)}

    def github_step(self, script: str) -> subprocess.Popen[str]:
        """A `run:` step, started the way the GitHub runner starts it."""
        return subprocess.Popen(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=self.dir,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, script: str, shell: tuple[str, ...] = ("bash", "-e", "-c")) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*shell, script], cwd=self.dir, env=self.env, capture_output=True, text=True,
                              timeout=120)

    def output(self) -> str:
        """What the job's one run has printed so far."""
        try:
            return (self.only_conversation() / conversation.OUTPUT_FILE).read_text(errors="replace")
        except (ValueError, FileNotFoundError):  # no conversation yet, or no output yet
            return ""

    def status(self) -> str | None:
        """The status of the job's one run; None while there is none, or it is being made."""
        try:
            return conversation.load_state(self.only_conversation()).status.value
        except (ValueError, conversation.ConversationError):
            return None

    def only_conversation(self) -> Path:
        [conv_dir] = conversation.list_dirs(self.home)
        return conv_dir


@pytest.fixture
def make_job(agent, tmp_path):
    """`make_job(server)`: a `Job`; at the end, none of its processes may be left."""
    jobs: list[Job] = []

    def make(server: Any) -> Job:
        jobs.append(Job(tmp_path, agent, server))
        return jobs[0]

    yield make
    for job in jobs:
        leftovers = Agent(job.home, job.dir, job.env).our_processes()
        for process in leftovers:
            process.kill()
        assert not leftovers, f"processes left behind: {leftovers}"


def cancel_like_github(step: subprocess.Popen[str], signals: list[int]) -> None:
    """Send `signals` as the GitHub runner does on cancel: each one only if the step is
    still there, SIGTERM 7.5 s after SIGINT and SIGKILL 2.5 s after SIGTERM."""
    waits = {signal.SIGINT: 7.5, signal.SIGTERM: 2.5, signal.SIGKILL: 0}
    for sig in signals:
        if step.poll() is not None:
            return
        step.send_signal(sig)
        try:
            step.wait(waits[sig])
        except subprocess.TimeoutExpired:
            continue


def run_github_ending_steps(job: Job) -> None:
    steps = github_steps()
    for name in ("Summary", "Export the conversation"):
        step = job.github_step(steps[name])
        out, err = step.communicate(timeout=60)
        assert step.returncode == 0, f"{name}: {err}"


def test_github_job_puts_answer_and_cost_in_the_summary_and_keeps_the_conversation(agent, serve, make_job, tmp_path):
    server = serve(finish("the fixture is missing"))
    job = make_job(server)

    step = job.github_step(github_steps()["Run the agent"])
    _, err = step.communicate(timeout=120)
    assert step.returncode == 0, err
    run_github_ending_steps(job)

    summary = job.summary.read_text()
    assert "### Agent: finished" in summary and "the fixture is missing" in summary
    assert re.search(r"Cost: \$[0-9.e-]+", summary), summary
    other = {"AGENT_HOME": str(tmp_path / "elsewhere")}
    imported = agent("import", str(job.dir / "conversation.json"), env=other)
    assert imported.returncode == 0, imported.stderr
    assert "finished" in agent("show", imported.stdout.strip(), env=other).stdout


@pytest.mark.parametrize(("signals", "code"), [
    ([signal.SIGINT], 130),  # the runner's first word
    ([signal.SIGTERM], 143),  # what is left when SIGINT went unheard
    ([signal.SIGINT, signal.SIGTERM, signal.SIGKILL], 130),  # the runner's sequence: SIGINT was enough
    ([signal.SIGKILL], -signal.SIGKILL),  # killed outright: the run's child pauses itself
])
def test_github_cancel_leaves_a_paused_conversation_a_summary_and_an_artifact(agent, serve, make_job, signals, code):
    server = serve(slow_text(seconds=60))
    job = make_job(server)
    step = job.github_step(github_steps()["Run the agent"])
    wait_until(lambda: "think" in job.output())

    cancel_like_github(step, signals)
    step.communicate(timeout=60)

    assert step.returncode == code
    conv_dir = job.only_conversation()
    state = wait_until(lambda: (s := conversation.load_state(conv_dir)).status.value != "running" and s)
    assert state.status.value == "paused"
    run_github_ending_steps(job)
    assert "### Agent: paused" in job.summary.read_text()
    exported = json.loads((job.dir / "conversation.json").read_text())
    assert exported["state"]["status"] == "paused"
    assert "think" in exported["output"]


def test_github_budget_and_timeout_end_the_job_with_their_codes(agent, serve, make_job, tmp_path):
    server = serve(slow_text(seconds=60))
    job = make_job(server)
    script = github_steps()["Run the agent"].replace("--timeout 1500", "--timeout 1")

    step = job.github_step(script)
    step.communicate(timeout=60)

    assert step.returncode == 124
    assert json.loads((job.dir / "result.json").read_text())["status"] == "error"


def test_gitlab_job_prints_answer_and_cost_and_keeps_the_conversation(agent, serve, make_job, tmp_path):
    server = serve(finish("three commits, all docs"))
    job = make_job(server)
    gitlab = yaml_blocks()[1]["agent"]
    script = [line for line in gitlab["script"] if not line.startswith("pip install")]  # installed here already
    job.env.update({"CI_PROJECT_DIR": str(job.dir)})

    ran = job.run("\n".join(script))
    after = job.run("\n".join(gitlab["after_script"]))

    assert ran.returncode == 0, ran.stderr
    assert after.returncode == 0, after.stderr
    assert "finished - three commits, all docs - cost" in after.stdout and "USD" in after.stdout
    assert json.loads((job.dir / "conversation.json").read_text())["state"]["final_answer"] == "three commits, all docs"
    for path in gitlab["artifacts"]["paths"]:
        assert (job.dir / path).exists()


def _run_supports(agent: Any, *options: str) -> bool:
    text = agent("run", "--help").stdout
    return all(option in text for option in options)


def test_cron_entries_do_not_overlap_and_prune(agent, serve, make_job, tmp_path):
    if not _run_supports(agent, "--exclusive", "--name", "--label") or agent("prune", "--help").returncode != 0:
        pytest.skip("needs `run --exclusive/--name/--label` and `agent prune` (issue 11, part A)")
    server = serve(slow_text(seconds=60), when_exhausted="repeat_last")
    job = make_job(server)
    (tmp_path / "src" / "app").mkdir(parents=True)
    nightly, prune = cron_commands()

    first = subprocess.Popen(["/bin/sh", "-c", nightly], env=job.env)
    wait_until(lambda: job.status() == "running")
    second = job.run(nightly, shell=("/bin/sh", "-c"))

    assert second.returncode != 0
    assert len(conversation.list_dirs(job.home)) == 1, "the second run must not have started"
    log = (tmp_path / "agent-nightly.log").read_text()
    assert job.only_conversation().name[:6] in log or "nightly-triage" in log, "it says which one is running"
    assert agent("interrupt", job.only_conversation().name, env={"AGENT_HOME": str(job.home)}).returncode == 0
    first.wait(30)
    pruned = job.run(prune, shell=("/bin/sh", "-c"))
    assert pruned.returncode == 0, pruned.stderr
    assert len(conversation.list_dirs(job.home)) == 1, "a run of today is not pruned by until=7d"
