"""`agent events`: status changes of every conversation as JSON lines, live and replayed."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time

import pytest

from agent_proc import conversation
from agent_proc.status import Status
from supervisor.events import watch_count
from tests.conftest import finish, slow_text, wait_until


def watches(process: subprocess.Popen[str]) -> int:
    return watch_count(process.pid)


def read_lines(process: subprocess.Popen[str], count: int, timeout: float = 20.0) -> list[dict]:
    """The next `count` lines `process` prints, read straight from the pipe (a buffered
    reader could hold lines that select() no longer sees)."""
    lines: list[dict] = []
    pending = getattr(process, "pending", b"")
    deadline = time.monotonic() + timeout
    while len(lines) < count:
        if b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            lines.append(json.loads(line))
            continue
        left = deadline - time.monotonic()
        assert left > 0, f"only {lines} after {timeout} s"
        if select.select([process.stdout], [], [], left)[0]:
            data = os.read(process.stdout.fileno(), 65536)
            assert data, f"events exited: {process.stderr.read()}"
            pending += data
    process.pending = pending
    return lines


@pytest.fixture
def follow(agent):
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, ready_watches: int = 1) -> subprocess.Popen[str]:
        process = agent.popen("events", *args)
        started.append(process)
        wait_until(lambda: watches(process) >= ready_watches)
        return process

    yield start
    for process in started:
        process.kill()
        process.communicate()
    # A run's last status is written just before its process exits: let it finish exiting.
    wait_until(lambda: not agent.our_processes())


def test_status_changes_of_a_new_run_are_streamed_in_order(agent, serve, follow):
    server = serve(finish("done"), when_exhausted="repeat_last")
    events = follow()

    conv_id = agent.start(server)
    lines = read_lines(events, 3)

    assert [(e["id"], e["from"], e["status"]) for e in lines] == [(conv_id, "idle", "starting"),
                                                                  (conv_id, "starting", "running"),
                                                                  (conv_id, "running", "finished")]
    assert set(lines[0]) == {"time", "id", "name", "labels", "type", "from", "status", "reason", "kind", "seq"}
    assert lines[0]["type"] == "status" and lines[0]["time"] < lines[1]["time"]

    assert agent("rm", conv_id).returncode == 0  # a removed conversation is let go, and the stream goes on
    again = agent.start(server)
    assert [(e["id"], e["status"]) for e in read_lines(events, 3)] == [(again, "starting"), (again, "running"),
                                                                       (again, "finished")]
    assert watches(events) == 2  # the root and the one conversation left: nothing leaks


def test_existing_runs_are_followed_and_filters_apply(agent, serve, follow):
    server = serve(slow_text(seconds=30), finish("done"))
    running = agent.start(server)
    wait_until(lambda: "think" in agent.output(running))
    events = follow("--filter", "status=paused,finished", ready_watches=2)

    agent("interrupt", running)  # running -> paused
    agent("send", running, "go on")
    agent("resume", "-d", running)  # paused -> running (filtered out) -> finished
    lines = read_lines(events, 2)

    assert [(e["id"], e["status"]) for e in lines] == [(running, "paused"), (running, "finished")]
    assert lines[0]["kind"] == "interrupt"


def test_a_name_filter_without_names_shows_nothing(agent, serve, follow):
    server = serve(finish("done"))
    events = follow("--filter", "name=nightly")
    everything = follow()
    agent.start(server)
    read_lines(everything, 2)
    time.sleep(0.3)
    assert not select.select([events.stdout], [], [], 0)[0]


def test_since_replays_past_changes_in_time_order(agent, serve):
    server = serve(finish("one"), finish("two"))
    first = agent.start(server)
    assert agent("wait", first).returncode == 0
    second = agent.start(server)
    assert agent("wait", second).returncode == 0
    boundary = json.loads(agent("events", "--since", "1h", "--until", "now").stdout.splitlines()[2])["time"]

    replayed = agent("events", "--since", "1h", "--until", "now")
    later = agent("events", "--since", boundary, "--until", "now")
    nothing = agent("events", "--until", "now")

    assert replayed.returncode == 0, replayed.stderr
    lines = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert [(e["id"], e["status"]) for e in lines] == [(first, "starting"), (first, "running"), (first, "finished"),
                                                      (second, "starting"), (second, "running"), (second, "finished")]
    assert [e["id"] for e in map(json.loads, later.stdout.splitlines())] == [first, second, second, second]
    assert nothing.stdout == ""


@pytest.mark.parametrize(("args", "expected"), [(["--filter", "colour=red"], "invalid filter 'colour=red'"),
                                                (["--filter", "status=running,sleeping"], "unknown status 'sleeping'"),
                                                (["--filter", "label="], "needs a key"),
                                                (["--since", "last week"], "not a time")])
def test_bad_filters_are_one_clear_line(agent, args, expected):
    result = agent("events", *args)
    assert result.returncode == 2 and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_name_and_label_filters_pick_runs(agent, serve, follow):
    if not all(option in agent("run", "--help").stdout for option in ("--name", "--label")):
        pytest.skip("needs `run --name/--label` (issue 11, part A)")
    server = serve(finish("done"), when_exhausted="repeat_last")
    by_label = follow("--filter", "label=team=infra")
    by_name = follow("--filter", "name=night*")

    plain = agent.start(server, "p", "--label", "team=web")
    labelled = agent.start(server, "p", "--label", "team=infra")
    named = agent.start(server, "p", "--name", "nightly")

    assert {(e["id"], e["labels"]["team"]) for e in read_lines(by_label, 2)} == {(labelled, "infra")}
    assert {(e["id"], e["name"]) for e in read_lines(by_name, 2)} == {(named, "nightly")}
    time.sleep(0.3)
    assert plain not in getattr(by_label, "pending", b"").decode() + getattr(by_name, "pending", b"").decode()


def test_an_imported_conversation_brings_no_old_news(agent, serve, follow, tmp_path):
    server = serve(slow_text(seconds=30), finish("done"))
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))
    agent("interrupt", conv_id)
    exported = agent("export", conv_id).stdout
    other = {"AGENT_HOME": str(tmp_path / "elsewhere")}
    events = agent.popen("events", env=other)
    try:
        wait_until(lambda: watches(events) >= 1)
        assert agent("import", "-", input=exported, env=other).returncode == 0
        agent("send", conv_id, "go on", env=other)
        assert agent("resume", conv_id, env=other).returncode == 0

        lines = read_lines(events, 3)
        assert [(e["id"], e["from"], e["status"]) for e in lines] == [(conv_id, "paused", "starting"),
                                                                      (conv_id, "starting", "running"),
                                                                      (conv_id, "running", "finished")]
    finally:
        events.kill()
        events.communicate()


def test_past_the_inotify_watch_limit_conversations_are_polled(agent, tmp_path):
    """The kernel's limit is lowered in a user namespace of the test's own, so nothing
    outside the test is touched."""
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "-U", "-r", "true"], capture_output=True) if unshare else None
    if (probe is None or probe.returncode != 0) and os.environ.get("CI") != "true":
        pytest.skip("needs unshare(1) and user namespaces, to lower the watch limit for this test alone")
    dirs = [conversation.create(model="openai/x", workspace=str(agent.workspace), base_url=None, prompt="p",
                                home=agent.home) for _ in range(6)]
    limited = (f"echo 3 > /proc/sys/user/max_inotify_watches && "
               f"exec {sys.executable} -m supervisor events")
    events = subprocess.Popen([unshare, "-U", "-r", "sh", "-c", limited], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=agent.env)
    try:
        wait_until(lambda: watches(events) >= 3)
        time.sleep(0.3)  # the ones beyond the limit are being set up to be polled
        for conv_dir in dirs:
            with conversation.transaction(conv_dir) as txn:
                txn.set_status(Status.STARTING, "by the test", token="t", starter={})

        lines = read_lines(events, len(dirs))
        assert sorted(e["id"] for e in lines) == sorted(d.name for d in dirs)
    finally:
        events.kill()
        _, err = events.communicate()
    assert "max_user_watches" in err
