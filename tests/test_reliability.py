"""Fault injection: the guarantees of docs/reliability.md, each shown with real
processes, real signals and a real HTTP server. Numbers in the test names refer to
the scenarios listed there."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from agent_proc import conversation
from agent_proc.conversation import CorruptFile, load_state, read_events
from supervisor import control
from tests.conftest import fault_env, finish, slow_text, terminal, wait_until

SECRET = "sk-reliability-" + "Zq9" * 10


@pytest.fixture(autouse=True)
def secret_key(agent):
    """Every run here carries an API key; none may end up on disk or in any output (17)."""
    agent.env["LLM_API_KEY"] = SECRET
    yield
    for path in agent.home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    assert not [text for text in agent.transcript if SECRET in text], "the API key leaked into the CLI's output"


def gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def streaming(agent, conv_id: str) -> bool:
    return "think" in agent.output(conv_id)


def marked_processes(agent, conv_id: str) -> list[psutil.Process]:
    marker = agent.state(conv_id).runtime.marker
    return [p for p in control.processes.marked(marker)]


# --------------------------------------------------------------------------- 1-4: signals


def test_01_honoured_sigint_needs_no_sigkill(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: streaming(agent, conv_id))
    report = json.loads(agent("interrupt", conv_id, "--json").stdout)["stop"]
    assert report["signals"] == ["SIGINT"] and report["method"] == "sigint"
    assert agent.state(conv_id).status.value == "paused"
    assert agent.state(conv_id).runtime.exit_code == 130  # the child exited by itself


def test_03_stopped_child_is_still_stopped(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: streaming(agent, conv_id))
    child = agent.child(conv_id)
    child.suspend()
    wait_until(lambda: child.status() == psutil.STATUS_STOPPED)

    report = json.loads(agent("interrupt", conv_id, "--json").stdout)["stop"]

    assert report["method"] == "sigint", report  # SIGCONT went with SIGINT, so it stopped itself
    assert gone(child)
    assert agent.state(conv_id).status.value == "paused"


def test_04_sigint_ignored_on_entry_is_still_honoured(agent, serve, tmp_path):
    server = serve(slow_text(seconds=30))
    record = tmp_path / "sigint-at-start"
    # As under nohup, cron or `cmd &` in a script: SIGINT is ignored from the start,
    # and the run's process inherits that.
    cli = subprocess.Popen(agent.command("run", "-m", "openai/scripted", "--base-url", server.url, "go"),
                           env={**agent.env, **fault_env(record=str(record))}, cwd=agent.workspace,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    conv_id = wait_until(lambda: agent("ps", "-q").stdout.strip())
    wait_until(lambda: streaming(agent, conv_id))
    assert record.read_text() == "ignored", "the condition under test did not hold"

    report = json.loads(agent("interrupt", conv_id, "--json").stdout)["stop"]

    assert report["method"] == "sigint"
    assert cli.wait(10) == 130
    cli.communicate()
    assert agent.state(conv_id).status.value == "paused"


# --------------------------------------------------------------------------- 5: descendants


def test_05_every_kind_of_descendant_is_ended(agent, serve):
    command = ("sleep 600 & setsid sleep 601 & (sleep 602 &) ; setsid sh -c 'sleep 603 & exit' ; "
               "sh -c 'trap \"\" INT TERM; sleep 604' & sleep 605")
    server = serve(terminal(command))
    conv_id = agent.start(server)
    sleeps = wait_until(lambda: len(found := [p for p in marked_processes(agent, conv_id) if p.name() == "sleep"]) == 6
                        and found)
    child = agent.child(conv_id)
    assert {p.pid for p in sleeps} <= {p.pid for p in child.children(recursive=True)}  # adopted by the subreaper

    result = agent("interrupt", conv_id)

    assert result.returncode == 0
    assert all(gone(p) for p in sleeps), [p for p in sleeps if not gone(p)]
    assert not marked_processes(agent, conv_id)


def test_05_a_process_outside_the_tree_is_found_killed_and_reported(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: streaming(agent, conv_id))
    # A daemon that left the run's tree entirely (it is our child, not the run's),
    # but still carries the run's marker in its environment.
    marker = agent.state(conv_id).runtime.marker
    stray = subprocess.Popen(["sleep", "600"], env={**os.environ, "AGENT_RUN_MARKER": marker}, start_new_session=True)
    try:
        report = json.loads(agent("interrupt", conv_id, "--json").stdout)["stop"]
        assert stray.wait(5) == -signal.SIGKILL
        assert [entry.split()[0] for entry in report["escaped"]] == [str(stray.pid)]
        assert agent.state(conv_id).runtime.stop["escaped"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            stray.kill()


# --------------------------------------------------------------------------- 6-9: races and supervisors


def test_06_child_exiting_as_the_interrupt_arrives(agent, serve):
    for _ in range(15):
        server = serve(finish("quick"))
        conv_id = agent.start(server)
        result = agent("interrupt", conv_id, "--grace", "0.5")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        agent("wait", conv_id)
        state = agent.state(conv_id)
        assert state.status.value in ("finished", "paused")
        assert not marked_processes(agent, conv_id)


def test_07_two_interrupts_at_once_make_one_stop(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: streaming(agent, conv_id))
    first, second = agent.popen("interrupt", conv_id), agent.popen("interrupt", conv_id)
    outputs = [p.communicate(timeout=20) for p in (first, second)]
    assert first.returncode == second.returncode == 0, outputs
    assert len(agent.events(conv_id, "stopped")) == 1
    assert len(agent.events(conv_id, "interrupted")) == 1
    assert sum("nothing to stop" in err for _, err in outputs) == 1


def test_08_foreground_supervisor_killed(agent, serve):
    server = serve(slow_text(seconds=30))
    cli, conv_id = agent.foreground(server)
    child = agent.child(conv_id)

    cli.kill()
    cli.wait()

    wait_until(lambda: gone(child), timeout=5)
    assert agent.state(conv_id).status.value == "paused"
    assert agent.events(conv_id, "interrupted")[0]["during"] == "model_call"


def test_08_crashed_child_leaves_nothing_behind_once_reconciled(agent, serve):
    """A child that dies without a word (OOM killer, segfault) leaves its tools to init;
    the next command that notices the crash ends them. (In a sandbox the kernel ends them
    first: test_sandbox.py.)"""
    server = serve(terminal("setsid sleep 600 & sleep 601"))
    conv_id = agent.start(server, "task", "--sandbox", "off")
    sleeps = wait_until(lambda: len(found := [p for p in marked_processes(agent, conv_id) if p.name() == "sleep"]) == 2
                        and found)
    agent.child(conv_id).kill()
    agent("ps")  # any command that reads it reconciles it (the watcher may have done so already)

    wait_until(lambda: all(gone(p) for p in sleeps), timeout=3)
    assert agent.state(conv_id).status.value == "error"
    killed = agent.events(conv_id, "reconciled")[0]["killed"]
    assert {p.pid for p in sleeps} <= {int(entry.split()[0]) for entry in killed}


def test_08_detached_supervisor_killed(agent, serve):
    server = serve(slow_text(seconds=30))
    conv_id = agent.start(server)
    wait_until(lambda: streaming(agent, conv_id))
    child = agent.child(conv_id)
    watcher = psutil.Process(agent.state(conv_id).runtime.supervisor_pid)

    watcher.kill()

    wait_until(lambda: gone(child), timeout=5)
    assert agent.state(conv_id).status.value == "paused"
    assert "running" not in agent("ps", "-a").stdout


@pytest.mark.slow
@pytest.mark.parametrize("ignores", ["", "SIGINT,SIGTERM"])
def test_09_ci_cancel_sequence(agent, serve, ignores):
    """SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that, as CI runners cancel."""
    server = serve(slow_text(seconds=60))
    cli, conv_id = agent.foreground(server, "--grace", "30", env=fault_env(ignore=ignores) if ignores else None)
    began = time.monotonic()
    for delay, sig in ((0, signal.SIGINT), (7.5, signal.SIGTERM), (10.0, signal.SIGKILL)):
        while cli.poll() is None and time.monotonic() - began < delay:
            time.sleep(0.01)
        if cli.poll() is not None:
            break
        if sig == signal.SIGKILL:
            assert agent.state(conv_id).status.value == "paused", "not paused when SIGKILL came"
        cli.send_signal(sig)
    cli.wait(10)
    assert cli.returncode in (130, 143), cli.returncode
    assert agent.state(conv_id).status.value == "paused"


# --------------------------------------------------------------------------- 10-11: crash consistency


@pytest.mark.slow
def test_10_two_hundred_sigkills_lose_no_acknowledged_event(agent, serve, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", agent.env["PYTHONPATH"])  # children are started from this process here
    server = serve(terminal("echo step"), when_exhausted="repeat_last")
    conv_id = agent.start(server, "go", "--max-iterations", "100000")
    agent("interrupt", conv_id)
    conv_dir = agent.dir(conv_id)
    rng = random.Random(20261127)
    for attempt in range(200):
        token = control.mark_starting(conv_dir, "test")
        child = control.spawn_child(conv_dir, supervisor_pid=None, token=token)
        if attempt % 2:
            # Half the kills land mid-run whatever the machine's speed: after the child
            # took over (its start-up alone may outlast a fixed window on a busy machine).
            wait_until(lambda started=child: load_state(conv_dir).status.value == "running"
                       or started.poll() is not None)
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # the other half anywhere, the start-up included
            time.sleep(rng.uniform(0.0, 0.6))
        seen, _ = read_events(conv_dir)  # acknowledged by now: every complete line a reader sees
        child.kill()
        child.wait()
        control.start_failed(conv_dir, token, "killed before it took over")  # only if it had not
        events, _ = read_events(conv_dir)
        assert events[:len(seen)] == seen, f"kill {attempt}: an event a reader had seen is gone"
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        json.loads((conv_dir / "state.json").read_bytes())
        state = control.reconcile(conv_dir)
        assert state.status.value != "running"
        assert state.events_seq == read_events(conv_dir)[0][-1]["seq"]
    shown = agent("show", "--json", conv_id)
    assert shown.returncode == 0
    assert len(agent.events(conv_id, "reconciled")) >= 100, "too few kills landed mid-run"


def test_11_concurrent_senders_and_readers(agent, serve):
    server = serve(*[terminal("sleep 0.05") for _ in range(40)], finish())
    conv_id = agent.start(server)
    conv_dir = agent.dir(conv_id)
    problems: list[str] = []
    stop = threading.Event()

    def read_constantly() -> None:
        while not stop.is_set():
            try:
                load_state(conv_dir)
                read_events(conv_dir)
                json.loads((conv_dir / "state.json").read_bytes())
            except (ValueError, CorruptFile) as e:
                problems.append(repr(e))

    readers = [threading.Thread(target=read_constantly) for _ in range(2)]
    for reader in readers:
        reader.start()
    senders = [agent.popen("send", conv_id, f"message {i}") for i in range(20)]
    shows = [agent.popen("show", "--json", conv_id) for _ in range(5)]
    try:
        for sender in senders:
            assert sender.wait(60) == 0
        for show in shows:
            out, _ = show.communicate(timeout=60)
            json.loads(out)
        assert agent("wait", conv_id).returncode == 0
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert not problems, problems[:3]
    received = [e["content"] for e in agent.events(conv_id, "user_message")][1:]
    assert sorted(received) == sorted(f"message {i}" for i in range(20))
    assert not conversation.pending_messages(conv_dir)


# --------------------------------------------------------------------------- 13-14: disk trouble, damaged files


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("needs permission to mount a tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_13_read_only_home(agent, serve, small_disk):
    server = serve(finish())
    home = small_disk / "home"
    env = {"AGENT_HOME": str(home)}
    created = agent("run", "-q", "-m", "openai/scripted", "--base-url", server.url, "go", env=env)
    assert created.returncode == 0
    conv_id = agent("ps", "-a", "-q", env=env).stdout.strip()
    before = {p.name: p.read_bytes() for p in (home / "conversations" / conv_id).iterdir() if p.is_file()}
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_disk)]).returncode == 0

    for args in (["send", conv_id, "more"], ["run", "-m", "openai/scripted", "--base-url", server.url, "again"]):
        result = agent(*args, env=env)
        assert result.returncode == 1
        assert "Read-only file system" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert agent("show", conv_id, env=env).returncode == 0
    after = {p.name: p.read_bytes() for p in (home / "conversations" / conv_id).iterdir() if p.is_file()}
    assert after == before


def test_13_disk_full(agent, serve, small_disk):
    server = serve(finish())
    home = small_disk / "home"
    env = {"AGENT_HOME": str(home)}
    assert agent("run", "-q", "-m", "openai/scripted", "--base-url", server.url, "go", env=env).returncode == 0
    conv_id = agent("ps", "-a", "-q", env=env).stdout.strip()
    conv_dir = home / "conversations" / conv_id
    before = {p.name: p.read_bytes() for p in conv_dir.iterdir() if p.is_file()}
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"x" * 1024)
    os.close(fd)

    result = agent("send", conv_id, "y" * 20000, env=env)

    assert result.returncode == 1
    assert "No space left on device" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    after = {p.name: p.read_bytes() for p in conv_dir.iterdir() if p.is_file()}
    assert after == before, "the previous state must be intact"
    assert not [p for p in conv_dir.iterdir() if p.name.endswith(".tmp")], "stale temp files"
    filler.unlink()
    assert agent("send", conv_id, "fits now", env=env).returncode == 0


def test_14_damaged_history_is_named_and_left_alone(agent, serve):
    server = serve(finish(), finish())
    damaged, healthy = agent.start(server), agent.start(server)
    agent("wait", damaged), agent("wait", healthy)
    path = agent.dir(damaged) / "events.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[2] = b'{"seq": 3, "type": "stat'  # a hand edit gone wrong, in the middle
    path.write_bytes(b"\n".join(lines))
    damaged_bytes = path.read_bytes()

    for args in (["show", damaged], ["send", damaged, "hello"], ["resume", damaged]):
        result = agent(*args)
        assert result.returncode == 2, args
        assert "events.jsonl" in result.stderr and "damaged line" in result.stderr
    assert path.read_bytes() == damaged_bytes, "nothing after the damage may be thrown away"
    assert agent("show", healthy).returncode == 0
    assert healthy in agent("ps", "-a").stdout


# --------------------------------------------------------------------------- 16: no leftovers


@pytest.mark.slow
def test_16_no_zombie_or_leftover_after_200_interrupted_and_resumed_runs(agent, serve):
    """A zombie can only linger under a parent that lives on and never reaps: the
    watcher (parent of the child), the child (parent of its tools, and of orphans it
    adopts) or this test process (parent of every CLI). Each is checked every cycle."""
    def zombies_under(process: psutil.Process) -> list[psutil.Process]:
        return [p for p in process.children() if p.status() == psutil.STATUS_ZOMBIE]

    for i in range(int(os.environ.get("CYCLES", 200))):
        server = serve(terminal("sleep 0.01 & (sleep 0.01 &); true"), slow_text(seconds=30), finish(f"run {i}"))
        conv_id = agent.start(server)
        wait_until(lambda conv_id=conv_id: streaming(agent, conv_id))
        child = agent.child(conv_id)
        watcher = psutil.Process(agent.state(conv_id).runtime.supervisor_pid)
        assert not zombies_under(child) and not zombies_under(watcher), f"cycle {i}"
        assert agent("interrupt", conv_id).returncode == 0
        assert agent("resume", "-q", conv_id).stdout == f"run {i}\n"
        assert not zombies_under(psutil.Process()), f"cycle {i}"
        server.stop()
    assert not agent.our_processes()
