"""`--backend slurm` against a real single-node Slurm (munge, slurmctld, slurmd from
Debian's packages, started for the session by `tests/slurm_cluster.py`).

Where Slurm is not installed these tests are skipped with the command that installs
it; under CI=true a missing Slurm fails them instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent_proc.conversation import load_state
from supervisor import scheduled
from supervisor.backends import slurm
from tests import slurm_cluster
from tests.conftest import Agent, dump, fault_env, finish, slow_text, terminal, wait_until

OTHER_HOST = "login-node-2"
UNSHARE = shutil.which("unshare") or "unshare"


@pytest.fixture(scope="session")
def cluster() -> Iterator[slurm_cluster.Cluster]:
    problem = None
    if absent := slurm_cluster.missing_programs():
        problem = f"{slurm_cluster.INSTALL_HINT} (missing: {', '.join(absent)})"
    elif os.geteuid() != 0:
        problem = "the test cluster runs slurmd as root: run these tests as root"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    # Not under pytest's temporary directory, which other pytest sessions on the machine
    # may prune while this one still runs the daemons.
    root = Path(tempfile.mkdtemp(prefix="agent-slurm-"))
    up = slurm_cluster.start(root)
    yield up
    up.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sagent(agent: Agent, cluster: slurm_cluster.Cluster) -> Iterator[Agent]:
    """The `agent` fixture, with the cluster's SLURM_CONF. At teardown, no job of the
    test may be left in the queue or running."""
    agent.env.update(cluster.env())
    yield agent
    ids = [d.name for d in (agent.home / "conversations").glob("*")]
    names = ",".join(f"agent-{i}" for i in ids)
    left = []
    if names:
        deadline = time.monotonic() + 15
        while True:
            left = cluster.command("squeue", "--noheader", f"--name={names}", "--format=%i %j %T").stdout.split("\n")
            left = [line for line in left if line.strip()]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for line in left:
            cluster.command("scancel", "--signal=KILL", "--full", line.split()[0], check=False)
    assert not left, f"jobs left behind: {left}"


def job_of(agent: Agent, conv_id: str) -> str:
    job = agent.state(conv_id).runtime.job
    assert job and job.get("id"), dump(agent, conv_id)
    return str(job["id"])


def scontrol(cluster: slurm_cluster.Cluster, job_id: str) -> dict[str, str]:
    """`scontrol show job` as a dict (the values used here have no spaces)."""
    line = cluster.command("scontrol", "show", "job", "-o", job_id).stdout
    return dict(re.findall(r"(\w+)=(\S*)", line))


def streaming(agent: Agent, conv_id: str) -> bool:
    """True once the run's child, in its job, has printed some streamed model text."""
    return (agent.dir(conv_id) / "output.log").exists() and "think" in agent.output(conv_id)


def submit(agent: Agent, server, *extra: str, env: dict[str, str] | None = None) -> str:
    """`agent run -d --backend slurm`; returns the conversation id."""
    return agent.start(server, "task", "--backend", "slurm", *extra, env=env)


@pytest.fixture(scope="session")
def other_host() -> None:
    """Skip (fail under CI) where new UTS and PID namespaces cannot be made."""
    probe = subprocess.run(["unshare", "--uts", "--pid", "--fork", "--mount-proc", "true"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        problem = f"cannot simulate another host with unshare: {probe.stderr.strip()} (needs root)"
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)


def elsewhere(agent: Agent, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`agent ARGS` as if on another machine: in its own UTS namespace (another hostname)
    and PID namespace (none of this machine's processes are visible), as a login node
    would be. The network and the files are shared, as on a cluster."""
    settings = [f"{k}={v}" for k, v in (env or {}).items()]
    command = [UNSHARE, "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c",
               f'hostname {OTHER_HOST} && exec "$@"', "sh", "env", *settings, *agent.command(*args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=agent.env, cwd=agent.workspace)


# --------------------------------------------------------------------------- a run's life


def test_run_is_submitted_executed_and_finished(sagent, serve, cluster):
    server = serve(terminal("echo from-the-node"), finish("all done"))
    cli = sagent.popen("run", "-m", "openai/scripted", "--base-url", server.url, "task",
                       env={"AGENT_BACKEND": "slurm"})
    out, err = cli.communicate(timeout=60)

    assert cli.returncode == 0, err
    assert out.strip() == "all done"
    conv_id = sagent("ps", "-a", "-q").stdout.strip()
    assert "submitted: slurm job" in err and "started on" in err and "from-the-node" in err, err
    state = sagent.state(conv_id)
    assert state.status.value == "finished"
    runtime = state.runtime
    assert runtime.backend == "slurm"
    job = runtime.job or {}
    assert job["cluster"] == cluster.name and job["node"] == cluster.node
    assert job["submitted_at"] <= job["started_at"] <= runtime.started_at
    assert runtime.host and runtime.host["hostname"] == cluster.node and runtime.host["boot_id"]
    statuses = [(e["from"], e["to"]) for e in sagent.events(conv_id, "status")]
    # The job's watcher takes its run from queued to starting; its child, to running.
    assert statuses == [("idle", "queued"), ("queued", "starting"), ("starting", "running"), ("running", "finished")]
    info = scontrol(cluster, job["id"])
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0"
    assert info["JobName"] == f"agent-{conv_id}"
    followed = sagent("logs", "-f", conv_id, timeout=30)
    assert followed.returncode == 0 and "from-the-node" in followed.stdout


def test_interrupt_of_an_in_flight_model_call_goes_through_slurm(sagent, serve, cluster):
    server = serve(slow_text(seconds=30), finish("resumed and done"))
    conv_id = submit(sagent, server)
    wait_until(lambda: streaming(sagent, conv_id), timeout=30)
    job_id = job_of(sagent, conv_id)

    result = sagent("interrupt", conv_id, "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "paused" and report["stop"]["method"] == "sigint", report
    assert server.wait_for("client_disconnected", timeout=5), server.events()
    assert not [e for e in server.events() if e["event"] == "response_done"]
    state = sagent.state(conv_id)
    assert state.status.value == "paused" and state.status_kind == "interrupt"
    assert state.runtime.stop["backend"] == "slurm" and state.runtime.stop["job"] == job_id
    assert state.runtime.stop["duration_ms"] > 0
    partial = sagent.events(conv_id, "model_message")[-1]
    assert partial["partial"] and partial["content"].startswith("Let me think"), dump(sagent, conv_id)
    # The job's main process (the watcher) passed on the child's 130, and Slurm kept it.
    info = scontrol(cluster, job_id)
    assert info["ExitCode"] == "130:0", info
    assert not sagent.our_processes()

    # resume goes back to Slurm, as a new job, without being told.
    resumed = sagent("resume", "-d", conv_id)
    assert resumed.returncode == 0, resumed.stderr
    assert sagent("wait", conv_id, "--timeout", "60").returncode == 0
    state = sagent.state(conv_id)
    assert state.runtime.backend == "slurm" and job_of(sagent, conv_id) != job_id
    assert state.final_answer == "resumed and done"


def test_ctrl_c_of_a_foreground_run_interrupts_through_slurm(sagent, serve, cluster):
    server = serve(slow_text(seconds=30))
    cli = sagent.popen("run", "--backend", "slurm", "-m", "openai/scripted", "--base-url", server.url, "task")
    conv_id = wait_until(lambda: sagent("ps", "-q").stdout.strip(), timeout=30)
    wait_until(lambda: streaming(sagent, conv_id), timeout=30)

    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=30)

    assert cli.returncode == 130, err
    assert "stopped in" in err and "think" in err
    state = sagent.state(conv_id)
    assert state.status.value == "paused"
    assert state.runtime.stop["requested_by"] == "agent run (SIGINT)" and state.runtime.stop["backend"] == "slurm"
    assert scontrol(cluster, job_of(sagent, conv_id))["ExitCode"] == "130:0"


def test_escalation_goes_through_scancel_when_the_run_ignores_sigint(sagent, serve, cluster):
    server = serve(slow_text(seconds=60))
    # The child ignores SIGINT and SIGTERM; its watcher would give it 30 s before SIGKILL.
    conv_id = submit(sagent, server, "--grace", "30", env=fault_env(ignore="SIGINT,SIGTERM"))
    wait_until(lambda: streaming(sagent, conv_id), timeout=30)
    child = sagent.child(conv_id)

    began = time.monotonic()
    result = sagent("interrupt", conv_id, "--grace", "1", "--json")
    took = time.monotonic() - began

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["stop"]
    # After our 1 s, SIGTERM through scancel makes the watcher kill its child at once.
    assert report["signals"][:2] == ["SIGINT", "SIGTERM"], report
    assert took < 1 + scheduled.TERM_WAIT + 5, took
    assert psutil.wait_procs([child], timeout=5)[1] == []
    state = sagent.state(conv_id)
    assert state.status.value == "paused" and "SIGKILL" in state.status_reason, dump(sagent, conv_id)
    assert state.runtime.stop["requested_by"] == "agent interrupt"


def test_pending_job_is_cancelled_by_interrupt_and_nothing_runs(sagent, serve, cluster):
    server = serve(finish("done later"), finish("done here"))
    conv_id = submit(sagent, server, "--sbatch-arg=--hold")  # held: it stays in the queue
    job_id = job_of(sagent, conv_id)
    listed = json.loads(sagent("ps", "--json").stdout)
    assert [(c["id"], c["status"], c["liveness"]) for c in listed] == [(conv_id, "queued", "yes")]
    assert "JobHeldUser" in listed[0]["liveness_detail"]
    assert listed[0]["backend"] == "slurm" and listed[0]["job"]["id"] == job_id
    assert "queued" in sagent("ps").stdout
    assert sagent("wait", conv_id, "--timeout", "0.5").returncode == 3

    result = sagent("interrupt", conv_id)

    assert result.returncode == 0, result.stderr
    state = sagent.state(conv_id)
    assert state.status.value == "paused" and "nothing ran" in state.status_reason
    assert not sagent.events(conv_id, "started") and not server.events()
    assert sagent.events(conv_id, "interrupted")[0]["during"] == "queued"
    assert scontrol(cluster, job_id)["JobState"] == "CANCELLED"
    assert sagent("wait", conv_id).returncode == 130

    # Nothing ran, so it starts (not resumes) when submitted again, without the hold.
    assert sagent("resume", conv_id, "--sbatch-arg=--comment=again").returncode == 0
    assert sagent.state(conv_id).final_answer == "done later"
    assert [e["reason"] for e in sagent.events(conv_id, "status") if e["to"] == "running"] == ["started"]

    # Told otherwise, it carries on here.
    sagent("send", conv_id, "one more thing")
    assert sagent("resume", conv_id, "--backend", "local").returncode == 0
    state = sagent.state(conv_id)
    assert (state.final_answer, state.runtime.backend, state.runtime.job) == ("done here", "local", None)


def test_pause_of_a_pending_job_cancels_it(sagent, serve):
    server = serve(finish())
    sagent.home.mkdir(mode=0o700, exist_ok=True)
    (sagent.home / "config.toml").write_text('backend = "slurm"\n')  # the backend from the config file
    conv_id = sagent.start(server, "task", "--sbatch-arg=--hold")
    assert sagent.state(conv_id).status.value == "queued"
    result = sagent("pause", conv_id)
    assert result.returncode == 0, result.stderr
    assert sagent.state(conv_id).status.value == "paused"


def test_plain_scancel_from_outside_pauses_the_run(sagent, serve, cluster):
    server = serve(slow_text(seconds=30))
    conv_id = submit(sagent, server)
    wait_until(lambda: streaming(sagent, conv_id), timeout=30)
    job_id = job_of(sagent, conv_id)

    cluster.command("scancel", job_id)

    state = wait_until(lambda: (s := sagent.state(conv_id)).status.value != "running" and s, timeout=15)
    assert state.status.value == "paused", dump(sagent, conv_id)
    assert "SIGTERM" in state.status_reason
    assert sagent.events(conv_id, "model_message")[-1]["partial"]
    wait_until(lambda: scontrol(cluster, job_id)["JobState"] == "CANCELLED", timeout=15)
    assert sagent("ps", "-a", "--json").returncode == 0
    assert sagent.state(conv_id).status.value == "paused"


def test_child_sigkilled_on_the_node_is_recorded_as_error(sagent, serve, cluster):
    server = serve(terminal("sleep 600"))
    conv_id = submit(sagent, server)
    child = wait_until(lambda: sagent.events(conv_id, "model_message") and sagent.child(conv_id), timeout=30)
    sleep = wait_until(lambda: [p for p in child.children(recursive=True) if p.name() == "sleep"], timeout=10)[0]
    job_id = job_of(sagent, conv_id)

    child.kill()

    # The watcher, in the job, finds its child gone, records why and ends the tool it left.
    state = wait_until(lambda: (s := sagent.state(conv_id)).status.value != "running" and s, timeout=15)
    assert state.status.value == "error" and "gone without recording an outcome" in state.status_reason
    assert psutil.wait_procs([sleep], timeout=5)[1] == []
    wait_until(lambda: scontrol(cluster, job_id)["JobState"] in ("FAILED", "COMPLETED"), timeout=15)
    assert scontrol(cluster, job_id)["ExitCode"] == "1:0"


# --------------------------------------------------------------------------- where a run lives


def test_ps_and_interrupt_from_another_host_neither_disturb_nor_lose_the_run(sagent, serve, cluster, other_host):
    server = serve(slow_text(seconds=30))
    conv_id = submit(sagent, server)
    wait_until(lambda: streaming(sagent, conv_id), timeout=30)
    child = sagent.child(conv_id)
    seq_before = sagent.state(conv_id).events_seq

    listed = elsewhere(sagent, "ps", "--json")
    shown = elsewhere(sagent, "show", conv_id)

    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["status"] == "running" and row["liveness"] == "yes", row
    assert f"Slurm job {job_of(sagent, conv_id)} running on {cluster.node}" == row["liveness_detail"]
    assert shown.returncode == 0 and "alive:       yes" in shown.stdout
    assert child.is_running() and sagent.state(conv_id).status.value == "running"
    assert not sagent.events(conv_id, "reconciled")

    # Slurm out of reach (its commands missing): unknown, and nothing is concluded.
    blind = elsewhere(sagent, "ps", "--json", env={"PATH": "/nonexistent"})
    [row] = json.loads(blind.stdout)
    assert row["status"] == "running" and row["liveness"] == "unknown" and "squeue" in row["liveness_detail"]
    assert "liveness unknown" in elsewhere(sagent, "ps", env={"PATH": "/nonexistent"}).stderr
    # The controller down (nothing listens where the configuration points): the same.
    down = cluster.root / "controller-down.conf"
    down.write_text(re.sub(r"SlurmctldPort=\d+", f"SlurmctldPort={slurm_cluster.free_port()}", cluster.conf.read_text())
                    + "MessageTimeout=2\n")
    began = time.monotonic()
    [row] = json.loads(elsewhere(sagent, "ps", "-a", "--json", env={"SLURM_CONF": str(down)}).stdout)
    assert row["liveness"] == "unknown" and "Unable to contact slurm controller" in row["liveness_detail"], row
    assert time.monotonic() - began < 20  # asked once, not once per question
    refused = elsewhere(sagent, "interrupt", conv_id, env={"SLURM_CONF": str(down)})
    assert refused.returncode == 1 and "Unable to contact slurm controller" in refused.stderr, refused.stderr
    assert sagent.state(conv_id).events_seq == seq_before and child.is_running()

    stopped = elsewhere(sagent, "interrupt", conv_id, "--json")

    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["stop"]["method"] == "sigint"
    assert sagent.state(conv_id).status.value == "paused"
    assert sagent.events(conv_id, "model_message")[-1]["partial"]
    assert psutil.wait_procs([child], timeout=5)[1] == []


def test_local_run_seen_from_another_host_is_unknown_not_dead(agent, serve, other_host):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: streaming(agent, conv_id))

    listed = elsewhere(agent, "ps", "--json")
    refused = elsewhere(agent, "interrupt", conv_id)

    [row] = json.loads(listed.stdout)
    assert row["status"] == "running" and row["liveness"] == "unknown", row
    assert refused.returncode == 2 and "stop it from there" in refused.stderr
    assert agent.state(conv_id).status.value == "running" and not agent.events(conv_id, "reconciled")
    assert agent("interrupt", conv_id).returncode == 0


def test_job_that_vanished_is_reconciled_with_slurms_reason(sagent, serve, cluster, other_host):
    server = serve(slow_text(seconds=30))
    conv_id = submit(sagent, server)
    wait_until(lambda: streaming(sagent, conv_id), timeout=30)
    job_id = job_of(sagent, conv_id)

    # The job's processes frozen, then killed, the child first: nobody records anything
    # (the child never sees the SIGINT its watcher's death would send it).
    child = sagent.child(conv_id)
    watcher = psutil.Process(sagent.state(conv_id).runtime.supervisor_pid)
    for process in (watcher, child):
        process.suspend()
    for process in (child, watcher):
        process.kill()
    wait_until(lambda: scontrol(cluster, job_id)["JobState"] in slurm.ENDED, timeout=15)
    assert sagent.state(conv_id).status.value == "running"

    listed = elsewhere(sagent, "ps", "-a", "--json")

    [row] = json.loads(listed.stdout)
    assert row["status"] == "error", row
    assert f"Slurm job {job_id} ended {scontrol(cluster, job_id)['JobState']} (signal 9)" in row["reason"], row
    assert sagent.events(conv_id, "reconciled")


# --------------------------------------------------------------------------- limits


def test_timeout_is_backed_by_slurms_time_limit(sagent, serve, cluster):
    server = serve(slow_text(seconds=30))
    conv_id = submit(sagent, server, "--timeout", "100")
    job_id = job_of(sagent, conv_id)
    info = scontrol(cluster, job_id)
    assert info["TimeLimit"] == "00:04:00", info  # ceil(100 s) + 2 minutes
    wait_until(lambda: streaming(sagent, conv_id), timeout=30)

    # Slurm's warning before its limit (what `--signal=B:USR1@90` sends): the run is
    # stopped as --timeout stops it.
    cluster.command("scancel", "--batch", "--signal=USR1", job_id)

    assert sagent("wait", conv_id, "--timeout", "30").returncode == 124
    state = sagent.state(conv_id)
    assert state.status.value == "error" and state.status_kind == "timeout"


def test_sbatch_refusal_is_one_clear_line_and_nothing_changes(sagent, serve):
    server = serve(finish())
    result = sagent("run", "-d", "--backend", "slurm", "--sbatch-arg=--partition=nosuch", "-m", "openai/scripted",
                    "--base-url", server.url, "task")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: sbatch refused the job:") and "\n" not in result.stderr.strip()
    conv_id = sagent("ps", "-a", "-q").stdout.strip()
    assert sagent.state(conv_id).status.value == "idle"
    wrong = sagent("run", "--sbatch-arg=--hold", "-m", "openai/scripted", "--base-url", server.url, "task")
    assert wrong.returncode == 2 and "--backend slurm" in wrong.stderr
    missing = sagent("run", "--backend", "slurm", "-m", "openai/scripted", "--base-url", server.url, "task",
                     env={"PATH": "/nonexistent"})
    assert missing.returncode == 2 and "apt-get install slurm-client" in missing.stderr
    assert sagent("ps", "-a", "-q").stdout.split() == [conv_id]  # nothing created by the refused ones


def test_the_api_key_is_not_sent_through_slurm(sagent, serve, cluster):
    server = serve(terminal("env"), finish())
    key = "sk-never-through-slurm-0123456789"
    conv_id = submit(sagent, server, env={"LLM_API_KEY": key})
    assert sagent("wait", conv_id, "--timeout", "60").returncode == 0
    job_env = cluster.command("scontrol", "show", "job", "-dd", job_of(sagent, conv_id)).stdout
    saved = list(cluster.root.joinpath("state").rglob("*"))
    assert key not in job_env
    assert not [p for p in saved if p.is_file() and key.encode() in p.read_bytes()]
    assert key not in (sagent.dir(conv_id) / "output.log").read_text()


def test_a_node_without_the_key_says_so(sagent, serve, cluster):
    result = sagent("run", "--backend", "slurm", "-m", "openai/gpt-4o", "--base-url", "http://model.cluster.invalid/v1",
                    "task", env={"LLM_API_KEY": "sk-only-on-the-login-node"})
    assert result.returncode == 1, result.stderr
    conv_id = sagent("ps", "-a", "-q").stdout.strip()
    state = sagent.state(conv_id)
    assert state.status.value == "error" and state.status_kind == "start"
    assert f"on {cluster.node}: no API key" in state.status_reason and "not sent through slurm" in state.status_reason


# --------------------------------------------------------------------------- operators


def test_doctor_checks_for_a_cluster(sagent, cluster, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    checks = {c.name: c for c in slurm.doctor_checks(sagent.home, submit_test_job=True, timeout=30)}
    assert checks["Slurm commands"].ok and checks["Slurm controller"].ok
    assert checks["flock in $AGENT_HOME"].ok
    assert checks["a node sees $AGENT_HOME"].ok, checks["a node sees $AGENT_HOME"].detail
    # A local filesystem is only a warning: this one-node cluster sees it.
    assert checks["$AGENT_HOME on shared storage"].ok is None
    monkeypatch.setenv("PATH", "/nonexistent")
    assert slurm.doctor_checks(sagent.home)[0].ok is False


# --------------------------------------------------------------------------- many at once


@pytest.mark.slow
def test_fifty_runs_submitted_at_once_then_all_interrupted(sagent, serve, cluster):
    n = 50
    server = serve(*[slow_text(seconds=120) for _ in range(n)])
    submitters = [sagent.popen("run", "-d", "--backend", "slurm", "-m", "openai/scripted", "--base-url", server.url,
                               f"task {i}") for i in range(n)]
    ids = []
    for process in submitters:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        ids.append(out.strip())
    wait_until(lambda: all(streaming(sagent, i) for i in ids), timeout=180, interval=0.5)
    jobs = [job_of(sagent, i) for i in ids]

    stoppers = [sagent.popen("interrupt", i) for i in ids]
    for process in stoppers:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err

    assert [sagent.state(i).status.value for i in ids] == ["paused"] * n
    assert all(sagent.events(i, "model_message")[-1]["partial"] for i in ids)
    assert not sagent.our_processes()
    states = cluster.command("squeue", "--noheader", "--states=all", f"--jobs={','.join(jobs)}", "--format=%T")
    assert set(states.stdout.split()) <= {"FAILED"}, states.stdout  # exit code 130 is a "failure" to Slurm
    assert not [p for p in psutil.process_iter(["cmdline"]) if "supervisor.watcher" in " ".join(p.info["cmdline"] or [])
                and any(i in " ".join(p.info["cmdline"]) for i in ids)]


def test_state_records_the_host_for_local_runs_too(agent, serve):
    server = serve(finish())
    conv_id = agent.start(server)
    assert agent("wait", conv_id).returncode == 0
    state = load_state(agent.dir(conv_id))
    assert state.runtime.backend == "local" and state.runtime.job is None
    assert state.runtime.host and state.runtime.host["hostname"] == os.uname().nodename
    assert Path("/proc/sys/kernel/random/boot_id").read_text().strip() == state.runtime.host["boot_id"]


def test_agent_doctor_checks_the_cluster_too(sagent, cluster):
    env = {"SLURM_CONF": str(cluster.conf)}
    result = sagent("doctor", "--backend", "slurm", "--json", env=env)
    findings = {f["check"]: f for f in json.loads(result.stdout)}
    assert findings["cluster"]["ok"], findings["cluster"]
    assert any("flock" in line for line in findings["cluster"]["details"])
    # Without Slurm's commands the cluster check fails, and so does the doctor.
    result = sagent("doctor", "--backend", "slurm", "--json", env={**env, "PATH": "/nonexistent"})
    findings = {f["check"]: f for f in json.loads(result.stdout)}
    assert findings["cluster"]["ok"] is False and "sbatch" in findings["cluster"]["summary"]
    assert result.returncode == 1
