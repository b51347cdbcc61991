"""Hardening: no lost stop, no wedged conversation, no terminal or file an attacker can
reach, and the edges a new user hits. Each test is a guarantee of docs/reliability.md
(numbers 26 to 36), with real processes, signals, files and the scripted server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from agent_proc import conversation
from agent_proc.conversation import load_state, transaction
from agent_proc.status import Status
from supervisor import control
from tests.conftest import dump, fault_env, finish, slow_text, terminal, wait_until
from tests.test_reliability import small_disk  # noqa: F401, F811  (a fixture)


def ps_status(agent, conv_id: str) -> str | None:
    rows = json.loads(agent("ps", "-a", "--json").stdout or "[]")
    return next((r["status"] for r in rows if r["id"] == conv_id), None)


def starting_run(agent, server, *extra: str, delay: float = 3.0) -> tuple[subprocess.Popen[str], str]:
    """`agent run -d` whose child waits `delay` s before taking the conversation over;
    returned while the conversation is `starting`."""
    cli = agent.popen("run", "-d", "-m", "openai/scripted", "--base-url", server.url, *extra, "task",
                      env=fault_env(start_delay=str(delay)))
    conv_id = wait_until(lambda: agent("ps", "-q").stdout.strip())
    assert ps_status(agent, conv_id) == "starting"  # `ps` lists a starting run
    return cli, conv_id


# --------------------------------------------------------------------------- 26: stops during start


@pytest.mark.parametrize("command", ["interrupt", "pause"])
def test_26_a_stop_during_start_is_honoured_and_the_model_never_called(agent, serve, command):
    server = serve(slow_text(seconds=30))
    cli, conv_id = starting_run(agent, server)

    stopped = agent(command, conv_id)

    assert stopped.returncode == 0, stopped.stderr
    assert "before it ran" in stopped.stdout  # it says it stopped a starting run
    assert cli.wait(30) == 130, cli.communicate()
    assert agent.state(conv_id).status is Status.PAUSED
    time.sleep(0.5)  # the late child has come and gone by now (it slept 3 s from its start)
    wait_until(lambda: not agent.our_processes(), timeout=10)
    assert agent.state(conv_id).status is Status.PAUSED
    assert server.requests() == [], "the late child called the model"
    assert not agent.events(conv_id, "started"), "the late child took the conversation over"
    # And it can be resumed normally afterwards.
    assert agent("resume", conv_id, "-d").returncode == 0
    agent("interrupt", conv_id)


@pytest.mark.parametrize("detach", [True, False], ids=["run -d", "run"])
def test_26_ctrl_c_during_start_stops_the_run_before_it_calls_the_model(agent, serve, detach):
    server = serve(slow_text(seconds=30))
    cli = agent.popen("run", *(["-d"] if detach else []), "-m", "openai/scripted", "--base-url", server.url, "task",
                      env=fault_env(start_delay="3"))
    conv_id = wait_until(lambda: agent("ps", "-q").stdout.strip())
    cli.send_signal(signal.SIGINT)
    assert cli.wait(30) == 130, cli.communicate()
    wait_until(lambda: not agent.our_processes(), timeout=15)
    assert agent.state(conv_id).status is Status.PAUSED
    assert server.requests() == []


def test_26_a_start_whose_starter_died_is_reconciled(agent, serve):
    server = serve(slow_text(seconds=30))
    cli = agent.popen("run", "-m", "openai/scripted", "--base-url", server.url, "task",
                      env=fault_env(start_delay="5"))
    conv_id = wait_until(lambda: agent("ps", "-q").stdout.strip())
    cli.kill()  # the foreground `agent run` dies before its child has taken over
    cli.wait()

    state = agent.state(conv_id)
    assert state.status is Status.STARTING
    assert agent("ps", "-a").returncode == 0  # reconciles
    state = agent.state(conv_id)
    assert state.status is Status.ERROR and "starting it" in state.status_reason, state.status_reason
    wait_until(lambda: not agent.our_processes(), timeout=10)  # its child was ended
    assert server.requests() == []


# --------------------------------------------------------------------------- 27: bad bytes


def test_27_text_that_is_not_utf8_is_refused_and_nothing_is_created(agent, serve):
    server = serve(finish())
    base = [*agent.command("run", "-m", "openai/scripted", "--base-url", server.url)]
    for argv, stdin in (([*base, b"caf\xe9 au lait"], None), ([*base, "-"], b"\xff\xfe diff --git")):
        result = subprocess.run(argv, input=stdin, capture_output=True, env=agent.env, cwd=agent.workspace)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count(b"\n") == 1 and b"not valid UTF-8" in result.stderr
    assert agent("ps", "-a", "-q").stdout == ""
    root = agent.home / "conversations"
    assert not root.exists() or os.listdir(root) == [], "a half-made conversation was left behind"


def test_27_send_of_bad_bytes_queues_nothing(agent, serve):
    server = serve(terminal("sleep 30"), finish())
    conv_id = agent.start(server)
    wait_until(lambda: "[terminal]" in agent.output(conv_id))
    for argv, stdin in (([*agent.command("send", conv_id), b"\xff"], None),
                        ([*agent.command("send", conv_id, "-")], b"ok \xc3\x28")):
        result = subprocess.run(argv, input=stdin, capture_output=True, env=agent.env, cwd=agent.workspace)
        assert result.returncode == 2 and b"not valid UTF-8" in result.stderr, result.stderr
    assert os.listdir(agent.dir(conv_id) / "inbox") == []
    agent("interrupt", conv_id)
    assert agent.state(conv_id).status is Status.PAUSED


def test_27_a_damaged_inbox_entry_is_moved_aside_and_never_blocks_a_resume(agent, serve):
    server = serve(slow_text(seconds=30), finish("resumed fine"))
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))
    agent("interrupt", conv_id)
    inbox = agent.dir(conv_id) / "inbox"
    # As an older version, a crash or a hand could leave them: a lone surrogate, not JSON, no number.
    (inbox / f"{10**18:020d}.json").write_text('{"content": "bad \\udcff bytes"}')
    (inbox / f"{10**18 + 1:020d}.json").write_bytes(b"\xff\x00 not json")
    (inbox / "planted.json").write_text('{"content": "who named me?"}')

    result = agent("resume", conv_id)

    assert result.returncode == 0, agent.output(conv_id)
    assert result.stdout == "resumed fine\n"
    errors = agent.events(conv_id, "error")
    assert len(errors) == 3 and all(e["kind"] == "inbox" for e in errors)
    assert sorted(os.listdir(inbox / "damaged")) == sorted([f"{10**18:020d}.json", f"{10**18 + 1:020d}.json",
                                                           "planted.json"])
    assert [n for n in os.listdir(inbox) if n != "damaged"] == []


# --------------------------------------------------------------------------- 28: messages


def test_28_a_message_sent_while_the_last_answer_streams_is_answered_before_the_end(agent, serve):
    final = {**slow_text("I think I am done now. " * 10, seconds=2),
             "tool_calls": [{"name": "finish", "arguments": {"message": "first answer"}}]}
    server = serve(final, finish("answered the message"))
    conv_id = agent.start(server)
    wait_until(lambda: "think" in agent.output(conv_id))

    sent = agent("send", conv_id, "also mention the weather")
    assert sent.returncode == 0 and "queued" in sent.stderr

    assert agent("wait", conv_id).returncode == 0
    state = agent.state(conv_id)
    assert state.final_answer == "answered the message"
    requests = server.requests()
    assert len(requests) == 2, "the run finished without showing the model the message"
    assert requests[1]["messages"][-1] == {"role": "user", "content": "also mention the weather"}


def test_28_a_message_for_a_run_stopped_first_is_kept_visibly_for_the_resume(agent, serve):
    server = serve(terminal("sleep 30"), finish("done"))
    conv_id = agent.start(server)
    wait_until(lambda: "[terminal]" in agent.output(conv_id))
    assert "kept for the next resume" in agent("send", conv_id, "use tabs").stderr
    agent("interrupt", conv_id)
    assert "[message] kept for the next resume: use tabs" in agent.output(conv_id)
    assert "use tabs" in agent("show", conv_id).stdout
    assert agent("resume", conv_id).returncode == 0
    assert server.requests()[1]["messages"][-1] == {"role": "user", "content": "use tabs"}


def test_28_inbox_entries_are_numbered_under_the_lock_not_by_the_clock(agent, serve):
    server = serve(terminal("sleep 30"), finish())
    conv_id = agent.start(server)
    wait_until(lambda: "[terminal]" in agent.output(conv_id))
    for i in range(3):
        assert agent("send", conv_id, f"m{i}").returncode == 0
    names = sorted(os.listdir(agent.dir(conv_id) / "inbox"))
    assert [int(n.removesuffix(".json")) for n in names] == [1, 2, 3]
    agent("interrupt", conv_id)
    taken = agent.events(conv_id, "user_message")[1:]
    assert [(e["content"], e["inbox_seq"]) for e in taken] == [("m0", 1), ("m1", 2), ("m2", 3)]


def test_28_a_clock_stepped_back_loses_no_queued_message(agent, serve):
    faketime = shutil.which("faketime")  # libfaketime: the real way to give one process another clock
    if faketime is None:
        if os.environ.get("CI") == "true":
            pytest.fail("faketime (Debian package faketime) is needed in CI")
        pytest.skip("needs faketime (apt-get install faketime)")
    server = serve(terminal("sleep 0.5"), terminal("sleep 30"), finish())
    conv_id = agent.start(server)
    wait_until(lambda: "[terminal]" in agent.output(conv_id))
    assert agent("send", conv_id, "first").returncode == 0
    wait_until(lambda: "[message] first" in agent.output(conv_id))  # taken in: the bookkeeping moved on

    # The clock is stepped back an hour (NTP, a resumed VM) for the next sender.
    stepped = subprocess.run([faketime, "-f", "-1h", *agent.command("send", conv_id, "second")],
                             capture_output=True, text=True, env=agent.env, timeout=60)
    assert stepped.returncode == 0 and "queued" in stepped.stderr, stepped.stderr
    agent("interrupt", conv_id)

    sent = [e["content"] for e in agent.events(conv_id, "user_message") if e["source"] == "send"]
    assert sent == ["first", "second"], "a message queued under a stepped-back clock vanished"


# --------------------------------------------------------------------------- 29: locks


def hold_lock_stopped(conv_dir: Path) -> subprocess.Popen[bytes]:
    """A process that takes the conversation's lock and is then stopped (Ctrl+Z)."""
    code = ("import fcntl, os, signal, sys\n"
            f"fd = os.open({str(conv_dir / 'lock')!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "os.kill(os.getpid(), signal.SIGSTOP)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"locked\n"
    wait_until(lambda: psutil.Process(holder.pid).status() == psutil.STATUS_STOPPED)
    return holder


@pytest.fixture
def paused_conversation(agent, serve):
    server = serve(finish())
    conv_id = agent.start(server)
    agent("wait", conv_id)
    return conv_id


def test_29_a_wait_for_a_stuck_lock_is_bounded_and_names_the_holder(agent, paused_conversation):
    holder = hold_lock_stopped(agent.dir(paused_conversation))
    try:
        started = time.monotonic()
        result = agent("send", paused_conversation, "hello", timeout=30)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2, result.stderr
    assert f"by pid {holder.pid}" in result.stderr and "stopped" in result.stderr, result.stderr
    assert waited < conversation.LOCK_WAIT + 3


def test_29_ctrl_c_ends_an_interrupt_waiting_on_a_stopped_lock_holder(agent, paused_conversation):
    holder = hold_lock_stopped(agent.dir(paused_conversation))
    try:
        cli = agent.popen("interrupt", paused_conversation)
        time.sleep(1.0)
        assert cli.poll() is None  # waiting for the lock
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=3)
    finally:
        holder.kill()
        holder.wait()
    assert cli.returncode == 130, err


# --------------------------------------------------------------------------- 30: readers on a broken disk


def forge_running(conv_dir: Path) -> None:
    """Make the record claim a run is going, in a process that has exited."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    with transaction(conv_dir) as txn:
        txn.set_status(Status.STARTING, "forged by the test", token="t", starter={})
        txn.set_status(Status.RUNNING, "forged by the test")
        txn.record("started", pid=gone.pid, create_time=time.time(), marker="forged")


@pytest.mark.parametrize("breakage", ["read-only", "full"])
def test_30_readers_on_a_broken_disk_show_what_is_there(agent, serve, small_disk, breakage):  # noqa: F811
    server = serve(finish())
    home = small_disk / "home"
    env = {"AGENT_HOME": str(home)}
    assert agent("run", "-q", "-m", "openai/scripted", "--base-url", server.url, "go", env=env).returncode == 0
    conv_id = agent("ps", "-a", "-q", env=env).stdout.strip()
    conv_dir = home / "conversations" / conv_id
    forge_running(conv_dir)
    (conv_dir / "stop.lock").touch()
    if breakage == "read-only":
        assert subprocess.run(["mount", "-o", "remount,ro", str(small_disk)]).returncode == 0
    else:
        fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 4096)
        os.close(fd)

    listed = agent("ps", "-a", "--json", env=env)
    shown = agent("show", conv_id, env=env)
    waited = agent("wait", conv_id, "--timeout", "5", env=env)

    assert listed.returncode == 0 and conv_id in listed.stdout, listed.stderr
    row = json.loads(listed.stdout)[0]
    assert row["status"] == "error" and "not recorded" in row["reason"], row
    assert shown.returncode == 0 and "not recorded" in shown.stdout, shown.stderr
    assert waited.returncode == 1 and "not recorded" in waited.stderr, waited.stderr
    assert load_state(conv_dir).status is Status.RUNNING  # nothing was written


# --------------------------------------------------------------------------- 31-33: processes end, limits hold


def blocked_signals(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)


STOP_SIGNAL_BITS = sum(1 << (s - 1) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1))


def test_31_stop_signals_blocked_by_whoever_started_agent_are_unblocked(agent, serve):
    server = serve(slow_text(seconds=30))
    # As an engine such as Ray starts processes: with SIGINT (and more) blocked.
    wrapper = ("import os, signal, sys\n"
               "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1})\n"
               "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n")
    started = subprocess.run([sys.executable, "-c", wrapper, "-m", "supervisor", "run", "-d", "-m", "openai/scripted",
                              "--base-url", server.url, "task"], capture_output=True, text=True, env=agent.env,
                             cwd=agent.workspace, timeout=60)
    assert started.returncode == 0, started.stderr
    conv_id = started.stdout.strip()
    wait_until(lambda: "think" in agent.output(conv_id))
    state = agent.state(conv_id)
    assert blocked_signals(state.runtime.pid) & STOP_SIGNAL_BITS == 0
    assert blocked_signals(state.runtime.supervisor_pid) & STOP_SIGNAL_BITS == 0

    report = json.loads(agent("interrupt", conv_id, "--json").stdout)["stop"]

    assert report["method"] == "sigint" and report["signals"] == ["SIGINT"], report


FORK_LOOP = """import os, sys, time
while True:
    with open(sys.argv[1], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(0.002)
    if os.fork():
        os._exit(0)
"""


def still_forking(trace: Path) -> bool:
    """Whether the fork loop has made a new process (written its pid) in the last 0.5 s."""
    before = trace.read_text()
    time.sleep(0.5)
    return trace.read_text() != before


def test_32_the_stop_keeps_killing_until_no_process_of_the_run_is_left(agent, serve):
    loop, trace = agent.workspace / "forker.py", agent.workspace / "forker.pid"
    loop.write_text(FORK_LOOP)
    server = serve(terminal(f"setsid {sys.executable} {loop} {trace} & sleep 30"))
    conv_id = agent.start(server)
    marker = wait_until(lambda: agent.state(conv_id).runtime.marker)
    wait_until(trace.exists)
    assert still_forking(trace)

    report = json.loads(agent("interrupt", conv_id, "--json").stdout)["stop"]

    assert report["survivors"] == [], report
    assert not still_forking(trace), "a process that forks in a loop outlived the stop"
    assert not control.processes.marked(marker)


@pytest.mark.parametrize("limit", ["--timeout", "--llm-timeout"])
def test_33_limits_hold_while_the_supervisor_is_stopped(agent, serve, limit):
    server = serve(slow_text(seconds=60), when_exhausted="repeat_last")
    conv_id = agent.start(server, "task", limit, "1.5", "--on-timeout", "error")
    wait_until(lambda: "think" in agent.output(conv_id))
    watcher = psutil.Process(agent.state(conv_id).runtime.supervisor_pid)
    watcher.suspend()  # SIGSTOP: the watchdog cannot act
    try:
        listed = json.loads(agent("ps", "--json").stdout)
        assert "supervisor" in listed[0]["reason"] and "stopped" in listed[0]["reason"], listed
        assert "is stopped" in agent("show", conv_id).stdout
        state = wait_until(lambda: (s := agent.state(conv_id)).status is not Status.RUNNING and s, timeout=15)
    finally:
        watcher.resume()
    assert state.status is Status.ERROR, dump(agent, conv_id)
    assert state.status_kind == ("timeout" if limit == "--timeout" else "llm_timeout")
    wait_until(lambda: not watcher.is_running() or watcher.status() == psutil.STATUS_ZOMBIE)


# --------------------------------------------------------------------------- 34: terminal escapes


HOSTILE = "title\x1b]0;pwned\x07 clip\x1b]52;c;aGVsbG8=\x07 clear\x1b[2J back\roverwrite bell\x07 csi\x9b1m end"


def on_a_terminal(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> tuple[int, bytes]:
    """Run `argv` with stdin, stdout and stderr on a new pty (so isatty() is true);
    return its exit code and everything it wrote there."""
    master, slave = os.openpty()
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every holder of the slave side has closed it
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return process.wait(timeout), output


def test_34_control_characters_reach_a_terminal_escaped_and_files_exactly(agent, serve):
    server = serve({"content": HOSTILE, "tool_calls": [{"name": "terminal",
                                                        "arguments": {"command": "printf 'tool\\033]52;c;eA==\\a'"}}]},
                   {"tool_calls": [{"name": "finish", "arguments": {"message": HOSTILE}}]})
    code, shown = on_a_terminal(agent.command("run", "-m", "openai/scripted", "--base-url", server.url, "go"),
                                agent.env, agent.workspace)
    assert code == 0, shown
    conv_id = agent("ps", "-a", "-q").stdout.strip()
    for argv in (["show", conv_id], ["logs", conv_id], ["ps", "-a"]):  # NO_COLOR: ps's own colour aside
        code, more = on_a_terminal(agent.command(*argv), {**agent.env, "NO_COLOR": "1"}, agent.workspace)
        assert code == 0, more
        shown += more
    text = shown.replace(b"\r\n", b"\n")  # the pty's own line discipline
    assert b"\x1b" not in text and b"\r" not in text and b"\x07" not in text and "\x9b".encode() not in text
    assert b"\\x1b]52;c;aGVsbG8=\\x07" in text and b"back\\roverwrite" in text and b"\\x1b]52;c;eA==" in text
    # Files and pipes keep the exact text.
    piped = subprocess.run(agent.command("logs", conv_id), capture_output=True, env=agent.env, timeout=60)
    assert HOSTILE.encode() in piped.stdout
    assert agent.state(conv_id).final_answer == HOSTILE
    assert json.loads(agent("show", conv_id, "--json").stdout)["state"]["final_answer"] == HOSTILE


# --------------------------------------------------------------------------- 35: files


def modes(*paths: Path) -> dict[str, str]:
    return {p.name: oct(p.stat().st_mode & 0o777) for p in paths}


def test_35_every_directory_is_private_whatever_the_umask(agent, serve, tmp_path):
    server = serve(finish())
    home = tmp_path / "a" / "b" / "home"  # missing parents too
    result = subprocess.run(agent.command("run", "-q", "-m", "openai/scripted", "--base-url", server.url, "go"),
                            env={**agent.env, "AGENT_HOME": str(home)}, cwd=agent.workspace, capture_output=True,
                            text=True, preexec_fn=lambda: os.umask(0), timeout=60)
    assert result.returncode == 0, result.stderr
    conv_dir = next((home / "conversations").iterdir())
    dirs = [tmp_path / "a", tmp_path / "a" / "b", home, home / "conversations", conv_dir, conv_dir / "inbox"]
    assert set(modes(*dirs).values()) == {"0o700"}, modes(*dirs)
    files = [p for p in conv_dir.iterdir() if p.is_file()]
    assert all(p.stat().st_mode & 0o077 == 0 for p in files), modes(*files)


def test_35_a_home_or_conversation_others_can_change_is_refused(agent, serve):
    server = serve(finish())
    conv_id = agent.start(server)
    agent("wait", conv_id)
    conv_dir = agent.dir(conv_id)

    os.chown(agent.home, 65534, 65534)  # another user's home
    try:
        result = agent("ps", "-a")
    finally:
        os.chown(agent.home, 0, 0)
    assert result.returncode == 2 and "belongs to uid 65534" in result.stderr, result.stderr

    conv_dir.chmod(0o777)  # anyone may plant files in it
    shown, listed = agent("show", conv_id), agent("ps", "-a")
    assert shown.returncode == 2 and f"chmod go-w {conv_dir}" in shown.stderr, shown.stderr
    assert listed.returncode == 0 and "can be written by group or others" in listed.stderr


def test_35_a_planted_symlink_never_redirects_a_read_or_a_write(agent, serve, tmp_path):
    server = serve(finish())
    conv_id = agent.start(server)
    agent("wait", conv_id)
    conv_dir = agent.dir(conv_id)
    victim = tmp_path / "victim"  # a file of root's that a shared home's other user points at
    forge_running(conv_dir)  # so that a plain `ps` would write (reconcile)
    victim.write_bytes((conv_dir / "events.jsonl").read_bytes() + b'{"torn')
    (conv_dir / "events.jsonl").unlink()
    (conv_dir / "events.jsonl").symlink_to(victim)
    (conv_dir / "lock").unlink()
    (conv_dir / "lock").symlink_to(tmp_path / "created-where-they-chose")
    before = victim.read_bytes()

    results = [agent("ps", "-a"), agent("show", conv_id), agent("send", conv_id, "hi"), agent("interrupt", conv_id)]

    assert victim.read_bytes() == before, "a write followed a planted symlink"
    assert not (tmp_path / "created-where-they-chose").exists()
    assert "symbolic link" in results[0].stderr
    for result in results[1:]:
        assert result.returncode == 2 and "symbolic link" in result.stderr, result.stderr


@pytest.mark.parametrize(("name", "content", "command"), [
    ("prices.json", '{"models": {}}', ["models"]),
    ("config.toml", 'model = "openai/gpt-4o"\n', ["config", "list"]),
])
def test_35_files_that_set_behaviour_follow_the_same_rules(agent, tmp_path, name, content, command):
    agent.home.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(content)
    planted = agent.home / name
    planted.symlink_to(elsewhere)
    linked = agent(*command)
    planted.unlink()
    planted.write_text(content)
    os.chown(planted, 65534, 65534)
    foreign = agent(*command)
    os.chown(planted, 0, 0)
    planted.chmod(0o666)
    writable = agent(*command)
    assert linked.returncode == 2 and "symbolic link" in linked.stderr, linked.stderr
    assert foreign.returncode == 2 and "uid 65534" in foreign.stderr, foreign.stderr
    assert writable.returncode == 2 and "go-w" in writable.stderr, writable.stderr


# --------------------------------------------------------------------------- 36: the edges a new user hits


def test_36_agent_alone_prints_the_help_as_help(agent):
    result = agent()
    assert result.returncode == 0 and result.stdout.startswith("Usage: agent") and result.stderr == ""


def test_36_rm_of_several_with_one_running_deletes_nothing_and_names_it(agent, serve):
    server = serve(finish(), finish(), slow_text(seconds=30))
    done = [agent.start(server) for _ in range(2)]
    for conv_id in done:
        agent("wait", conv_id)
    running = agent.start(server)

    result = agent("rm", done[0], running, done[1])

    assert result.returncode == 2 and running in result.stderr and "nothing deleted" in result.stderr
    assert sorted(agent("ps", "-a", "-q").stdout.split()) == sorted([*done, running])
    assert "xargs -r" in agent("rm", "--help").stdout and "xargs -r" in agent("ps", "--help").stdout
    assert agent("rm", "-f", done[0], running, done[1]).returncode == 0
    assert agent("ps", "-a", "-q").stdout == ""


def closed_pipe() -> int:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has had enough, or `| true`
    return write_end


def test_36_a_reader_that_goes_away_changes_no_exit_code_and_stops_no_run(agent, serve):
    last = {**slow_text("streaming text " * 40, seconds=2),
            "tool_calls": [{"name": "finish", "arguments": {"message": "three"}}]}
    server = serve(finish("one"), finish("two"), last)
    for _ in range(2):
        agent("wait", agent.start(server))
    out = closed_pipe()
    listed = subprocess.run(agent.command("ps", "-a"), stdout=out, stderr=subprocess.PIPE, env=agent.env)
    os.close(out)
    assert listed.returncode == 0 and listed.stderr == b""

    # A foreground run whose stderr (progress) and stdout (answer) readers are gone.
    out, err = closed_pipe(), closed_pipe()
    ran = subprocess.run(agent.command("run", "-m", "openai/scripted", "--base-url", server.url, "go"),
                         stdout=out, stderr=err, env=agent.env, cwd=agent.workspace, timeout=60)
    os.close(out)
    os.close(err)
    conv_id = agent("ps", "-a", "-q").stdout.split()[0]  # the newest
    assert ran.returncode == 0, agent.output(conv_id)
    assert agent.state(conv_id).final_answer == "three"


def test_36_status_lines_start_a_line_and_output_in_the_grace_period_shows_as_it_comes(agent, serve):
    server = serve(slow_text("think " * 400, seconds=20))
    cli = agent.popen("run", "-m", "openai/scripted", "--base-url", server.url, "--grace", "3", "task",
                      env=fault_env(ignore="SIGINT,SIGTERM"))
    os.set_blocking(cli.stderr.fileno(), False)
    seen = ""

    def read() -> str:
        nonlocal seen
        with contextlib.suppress(BlockingIOError):
            seen += os.read(cli.stderr.fileno(), 1 << 20).decode()
        return seen

    wait_until(lambda: "think" in read())
    cli.send_signal(signal.SIGINT)
    wait_until(lambda: "[agent] SIGINT: stopping" in read())
    during_grace = len(read())
    time.sleep(1.5)
    assert cli.poll() is None  # still in the grace period
    assert len(read()) > during_grace + 20, "the run's output was held back during the grace period"
    cli.wait(20)
    read()
    stopped_line = seen.index("[agent] stopped in")
    assert seen[stopped_line - 1] == "\n", repr(seen[stopped_line - 80:stopped_line + 20])
    assert cli.returncode == 130


def test_36_max_cost_already_spent_says_so(agent, serve):
    usage = {"prompt_tokens": 100, "completion_tokens": 100}
    server = serve({**finish("one"), "usage": usage}, {**finish("two"), "usage": usage})
    env = {"LLM_INPUT_COST_PER_TOKEN": "0.001", "LLM_OUTPUT_COST_PER_TOKEN": "0.002"}
    conv_id = agent.start(server, "go", env=env)
    agent("wait", conv_id)
    agent("send", conv_id, "more")

    resumed = agent("resume", conv_id, "--max-cost", "0.1", env=env)

    assert resumed.returncode == 4, resumed.stderr
    assert "already spent $0.3000 of --max-cost $0.1" in agent.state(conv_id).status_reason


@pytest.mark.parametrize("how", ["ctrl-c", "output closed"])
def test_36_an_interrupted_demo_leaves_no_run_no_server_and_no_conversation(agent, how):
    master, slave = os.openpty()
    if how == "ctrl-c":  # on a terminal, with NO_COLOR: no colour either
        demo = subprocess.Popen(agent.command("demo", "--seconds", "30"), stdin=slave, stdout=slave, stderr=slave,
                                env={**agent.env, "NO_COLOR": "1"}, cwd=agent.workspace)
    else:
        demo = subprocess.Popen(agent.command("demo", "--seconds", "30"), stdout=subprocess.PIPE, stderr=slave,
                                env=agent.env, cwd=agent.workspace)
    os.close(slave)
    wait_until(lambda: agent("ps", "-q").stdout.strip(), timeout=30)
    wait_until(lambda: "think" in agent.output(agent("ps", "-q").stdout.strip()) or True)
    time.sleep(1.0)
    if how == "ctrl-c":
        demo.send_signal(signal.SIGINT)
    else:
        demo.stdout.close()
    assert demo.wait(30) == 130
    shown = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(master, 65536):
            shown += chunk
    os.close(master)
    assert agent("ps", "-a", "-q").stdout == "", "the demo left a conversation behind"
    wait_until(lambda: not agent.our_processes(), timeout=10)
    if how == "ctrl-c":
        assert b"\x1b[" not in shown, shown
