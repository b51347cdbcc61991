"""The sandbox of the model's commands, with real bubblewrap sandboxes, real runs and a
real scripted server: what a command may write, see and reach, that nothing it starts
outlives it, that the API key is out of its reach, and that a machine without
namespaces refuses to start a run instead of running it unconfined."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, finish, slow_text, terminal, wait_until
from tests.sandboxes import FAKE_BWRAP, require_sandbox, script


@pytest.fixture(autouse=True)
def _needs_bwrap() -> None:
    require_sandbox()


@pytest.fixture
def outside() -> Iterator[Path]:
    """A new directory outside /tmp (which a sandbox replaces with a private one), for
    the places a sandbox must protect."""
    path = Path(tempfile.mkdtemp(prefix="agent-sandbox-test-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_tools(agent, serve, *commands: str, flags: tuple[str, ...] = (), env: dict[str, str] | None = None,
              ) -> list[str]:
    """A foreground run in which the model runs `commands` one by one, then finishes;
    returns what each command gave back."""
    server = serve(*[terminal(c) for c in commands], finish())
    result = agent("run", *flags, "-m", "openai/scripted", "--base-url", server.url, "task", env=env)
    assert result.returncode == 0, result.stderr
    conv_id = agent("ps", "-a", "-q").stdout.split()[-1]
    return [e["content"] for e in agent.events(conv_id, "tool_result") if e["name"] == "terminal"]


# --------------------------------------------------------------------------- files


def test_writes_outside_the_workspace_fail_and_inside_succeed(agent, serve, outside):
    (outside / "existing").write_text("before")
    (agent.workspace.parent / "host-only").write_text("in the machine's /tmp")
    inside, create, clobber, beside, scratch = run_tools(
        agent, serve,
        "echo data > made-here && mkdir -p sub/dir && echo more > sub/dir/f && cat made-here",
        f"echo new > {outside}/created",
        f"echo changed > {outside}/existing",
        f"touch {agent.workspace.parent}/beside-the-workspace && ls {agent.workspace.parent}",
        "echo scratch > /tmp/scratch-file && cat /tmp/scratch-file",
    )
    assert inside == "[exit code 0]\ndata\n" and (agent.workspace / "sub/dir/f").read_text() == "more\n"
    assert (agent.workspace / "made-here").read_text() == "data\n"
    for refused in (create, clobber):
        assert "Read-only file system" in refused and refused.startswith("[exit code 1]"), refused
    assert not (outside / "created").exists() and (outside / "existing").read_text() == "before"
    # /tmp is writable, and private: nothing lands in the machine's /tmp (where this
    # test's workspace is), and what is there is not seen.
    assert scratch == "[exit code 0]\nscratch\n" and not Path("/tmp/scratch-file").exists()
    assert not (agent.workspace.parent / "beside-the-workspace").exists()
    # Only the mount points: the workspace, and the empty $AGENT_HOME; not host-only.
    assert beside.split("\n")[1:] == ["beside-the-workspace", "home", "ws", ""], beside


def test_home_is_read_only_and_agent_home_invisible(agent, serve, outside):
    home = outside / "user-home"
    home.mkdir()
    (home / ".profile").write_text("readable\n")
    read_home, write_home, list_agent_home, write_agent_home = run_tools(
        agent, serve,
        "cat $HOME/.profile",
        "touch $HOME/new-file",
        "ls -A $AGENT_HOME; ls $AGENT_HOME/conversations; echo listed",
        "touch $AGENT_HOME/planted",
        env={"HOME": str(home)},
    )
    assert read_home == "[exit code 0]\nreadable\n"
    assert "Read-only file system" in write_home and not (home / "new-file").exists()
    # An empty, read-only directory where the conversations are: none of their files.
    assert "No such file or directory" in list_agent_home and list_agent_home.endswith("listed\n")
    assert "Read-only file system" in write_agent_home and not (agent.home / "planted").exists()


def test_read_only_mode_writes_nothing_but_tmp(agent, serve):
    (agent.workspace / "source.txt").write_text("code\n")
    read, write, scratch = run_tools(
        agent, serve, "cat source.txt", "echo x > new.txt", "echo ok > /tmp/f && cat /tmp/f",
        flags=("--sandbox", "read-only"),
    )
    assert read == "[exit code 0]\ncode\n"
    assert "Read-only file system" in write and not (agent.workspace / "new.txt").exists()
    assert scratch == "[exit code 0]\nok\n"


@pytest.mark.parametrize("mode", ["workspace", "read-only"])
def test_writable_paths_are_writable_in_both_modes(agent, serve, outside, mode):
    cache, other = outside / "cache", outside / "other"
    cache.mkdir()
    other.mkdir()
    cached, elsewhere = run_tools(agent, serve, f"echo hit > {cache}/entry", f"touch {other}/x",
                                  flags=("--sandbox", mode, "--writable", str(cache)))
    assert cached == "[exit code 0]\n" and (cache / "entry").read_text() == "hit\n"
    assert "Read-only file system" in elsewhere and not (other / "x").exists()


# --------------------------------------------------------------------------- network


@pytest.mark.parametrize("network", ["on", "off"])
def test_network_off_cannot_reach_a_server_on_loopback_outside(agent, serve, network):
    """The scripted server listens on 127.0.0.1 outside the sandbox: a command reaches
    it with the network on, and finds nothing there with it off (a loopback of its own)."""
    target = serve(finish())
    port = target.base.rsplit(":", 1)[1]
    probe = (f"exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3; "
             "echo; echo interfaces: $(awk -F: 'NR > 2 {print $1}' /proc/net/dev)")
    [output] = run_tools(agent, serve, probe, flags=("--network", network))
    interfaces = output.rsplit("interfaces:", 1)[1].split()
    if network == "on":
        assert "200 OK" in output and "\nok\n" in output, output
    else:
        assert "Connection refused" in output and "200 OK" not in output, output
        assert interfaces == ["lo"], output


# --------------------------------------------------------------------------- processes

TAG = "sandbox-escape-test"

# A fork-and-exit loop: every 50 ms a new process, whose parent exits at once. Its pid
# keeps changing, too fast to catch with a process scan on a busy machine: each one
# leaves a beat in the workspace instead.
FORKER = '#!/bin/bash\necho $$ >> beats\nsleep 0.05\n"$0" &\n'

ESCAPES = (
    # a daemon: its own session, double-forked, orphaned
    f"setsid bash -c '(exec -a {TAG}-daemon sleep 600) &' ; "
    # a process that ignores every catchable signal
    f"(trap '' INT TERM HUP QUIT USR1 USR2 PIPE ALRM; exec -a {TAG}-stubborn sleep 601) & "
    "./forker & "
    "echo started; sleep 602"
)


def tagged() -> list[psutil.Process]:
    """The daemon and the stubborn process, if they are alive."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if (process.info["cmdline"] or [""])[0].startswith(TAG):
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except psutil.NoSuchProcess:
                continue
    return found


def beats(workspace: Path) -> int:
    try:
        return len((workspace / "beats").read_text().split())
    except FileNotFoundError:
        return 0


def loop_is_running(workspace: Path) -> bool:
    before = beats(workspace)
    time.sleep(0.3)
    return beats(workspace) > before


@pytest.mark.parametrize("how", ["interrupt", "sigkill-of-the-child"])
def test_nothing_a_command_started_survives_the_run(agent, serve, how):
    script(agent.workspace / "forker", FORKER)
    server = serve(terminal(ESCAPES))
    conv_id = agent.start(server)
    try:
        wait_until(lambda: len(tagged()) == 2 and loop_is_running(agent.workspace), timeout=15)
        if how == "interrupt":
            result = agent("interrupt", conv_id)
            assert result.returncode == 0, result.stderr
        else:
            agent.child(conv_id).kill()
        wait_until(lambda: not tagged(), timeout=3)
        assert not loop_is_running(agent.workspace)
    finally:
        for process in tagged():
            process.kill()
    agent("wait", conv_id)


def test_each_command_sees_only_its_own_processes(agent, serve):
    [output] = run_tools(agent, serve,
                         "ls -d /proc/[0-9]* | wc -l; echo ppid=$PPID; cat /proc/1/cmdline | tr '\\0' ' '")
    count, ppid, init = output.splitlines()[1:4]
    assert int(count) <= 4, output  # bwrap's init, bash, ls, wc
    assert ppid == "ppid=1" and "bwrap" in init.split()[0], output


# --------------------------------------------------------------------------- no namespaces


def _restricted_bwrap(tmp_path: Path) -> str:
    """The real bwrap, run where the kernel refuses every new user namespace
    (user.max_user_namespaces = 0 in a namespace of its own), as in some containers."""
    from agent_proc.sandbox import find_bwrap

    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1) to restrict user namespaces")
    return script(tmp_path / "bwrap-without-userns",
                   "#!/bin/sh\nexec unshare --user --map-root-user sh -c "
                   "'echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \"$@\"' "
                   f"{find_bwrap()} \"$@\"\n")


@pytest.mark.parametrize("bwrap", ["fake", "restricted-kernel", "missing"])
def test_without_namespaces_a_run_refuses_to_start(agent, serve, tmp_path, bwrap):
    path = {"fake": lambda: script(tmp_path / "bwrap", FAKE_BWRAP),
            "restricted-kernel": lambda: _restricted_bwrap(tmp_path),
            "missing": lambda: str(tmp_path / "no-such-bwrap")}[bwrap]()
    server = serve(terminal("touch escaped"), finish())
    result = agent("run", "-m", "openai/scripted", "--base-url", server.url, "task", env={"AGENT_BWRAP": path})
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: cannot sandbox the model's commands on this machine (")
    assert "--sandbox off" in line
    reason = {"fake": "No permissions to create new namespace", "restricted-kernel": "Creating new namespace failed",
              "missing": "No such file or directory"}[bwrap]
    assert reason in line, line
    assert not server.requests() and not (agent.workspace / "escaped").exists()
    assert agent("ps", "-a", "-q").stdout == ""  # nothing was created
    # The way out works.
    result = agent("run", "--sandbox", "off", "-m", "openai/scripted", "--base-url", server.url, "task",
                   env={"AGENT_BWRAP": path})
    assert result.returncode == 0, result.stderr


def test_resume_refuses_too_and_contradictions_are_usage_errors(agent, serve, tmp_path):
    server = serve(finish(), finish())
    agent("run", "-m", "openai/scripted", "--base-url", server.url, "task")
    conv_id = agent("ps", "-a", "-q").stdout.strip()
    agent("send", conv_id, "more")
    result = agent("resume", conv_id, env={"AGENT_BWRAP": script(tmp_path / "bwrap", FAKE_BWRAP)})
    assert result.returncode == 1 and "--sandbox off" in result.stderr and len(result.stderr.splitlines()) == 1
    assert agent.state(conv_id).status.value == "finished"
    result = agent("resume", conv_id, "--sandbox", "off", "--network", "off")
    assert result.returncode == 2 and "--network off needs a sandbox" in result.stderr
    result = agent("resume", conv_id, "--writable", str(agent.home / "conversations"))
    assert result.returncode == 2 and "is inside $AGENT_HOME" in result.stderr, result.stderr


# --------------------------------------------------------------------------- settings


def test_sandbox_settings_are_recorded_shown_and_changed_on_resume(agent, serve, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    server = serve(terminal("echo first"), slow_text(seconds=30), terminal("echo second"), finish(), finish())
    env = {"AGENT_SANDBOX": "read-only", "AGENT_NETWORK": "off", "AGENT_WRITABLE": f"{extra}:{agent.workspace}"}
    conv_id = agent.start(server, "task", env=env)
    wait_until(lambda: agent.state(conv_id).metrics.tool_calls == 1)
    settings = agent.state(conv_id).settings
    assert (settings.sandbox, settings.network, settings.writable) == ("read-only", False, [str(extra),
                                                                                        str(agent.workspace)])
    assert "sandbox:     read-only, network off, also writable: " in agent("show", conv_id).stdout
    agent("interrupt", conv_id)
    # resume keeps what the run had, whatever the environment says now, unless told.
    result = agent("resume", conv_id, "--sandbox", "workspace", "--network", "on",
                   env={"AGENT_SANDBOX": "off"})
    assert result.returncode == 0, result.stderr
    settings = agent.state(conv_id).settings
    assert (settings.sandbox, settings.network, settings.writable) == ("workspace", True, [str(extra),
                                                                                       str(agent.workspace)])
    doc = json.loads(agent("show", conv_id, "--json").stdout)
    assert doc["settings"]["sandbox"] == "workspace"
    agent("send", conv_id, "once more")
    assert agent("resume", conv_id, env={"AGENT_SANDBOX": "off"}).returncode == 0
    assert agent.state(conv_id).settings.sandbox == "workspace"
    result = agent("run", "-m", "openai/scripted", "--base-url", server.url, "x", env={"AGENT_SANDBOX": "maybe"})
    assert result.returncode == 2 and "'maybe'" in result.stderr


def test_the_config_file_gives_sandbox_defaults_below_the_environment(agent, serve):
    assert agent("config", "set", "sandbox", "read-only").returncode == 0
    assert agent("config", "set", "network", "off").returncode == 0
    assert agent("config", "set", "sandbox", "nowhere").returncode == 2
    server = serve(finish(), finish())
    first = agent.start(server)
    second = agent.start(server, "task", env={"AGENT_SANDBOX": "workspace"})
    for conv_id in (first, second):
        agent("wait", conv_id)
    assert (agent.state(first).settings.sandbox, agent.state(first).settings.network) == ("read-only", False)
    assert (agent.state(second).settings.sandbox, agent.state(second).settings.network) == ("workspace", False)


# --------------------------------------------------------------------------- the API key

# Prints which of the places a process may look for the key hold it. The key is given
# in base64, so that the command the model runs (kept in the history) does not hold it.
SCANNER = """
import base64, glob, os, sys
key = base64.b64decode(sys.argv[1])
places = ["/proc/%d/environ" % os.getppid()]
places += sorted(glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline"))
read, leaks = [], []
for path in places + ["planted-control"]:
    try:
        data = open(path, "rb").read()
    except OSError:
        continue
    read.append(path)
    if key in data:
        pid = path.split("/")[2] if path.startswith("/proc/") else ""
        try:
            who = open("/proc/%s/cmdline" % pid, "rb").read().replace(b"\\0", b" ").decode()[:100] if pid else path
        except OSError:
            who = "?"
        leaks.append(path + " (" + who + ")")
if key in b"\\n".join(k.encode() + b"=" + v.encode() for k, v in os.environ.items()):
    leaks.append("env")
print("read:", *read)
for leak in leaks:
    print("LEAK", leak)
"""


@pytest.mark.parametrize("mode", ["workspace", "read-only", "off"])
def test_the_api_key_never_reaches_a_tool(agent, serve, mode):
    key = "sk-proj-" + os.urandom(24).hex()
    encoded = base64.b64encode(key.encode()).decode()
    (agent.workspace / "planted-control").write_text(key)  # proves the scanner finds a key where there is one
    (agent.workspace / "scan.py").write_text(SCANNER)
    server = serve(
        {**terminal("env; echo; cat /proc/$PPID/environ | tr '\\0' '\\n'; echo; "
                    f"{sys.executable} scan.py {encoded}"), "expect_api_key": key},
        {**finish(), "expect_api_key": key},
    )
    conv_id = agent.start(server, "task", "--sandbox", mode, env={"OPENAI_API_KEY": key})
    assert agent("wait", conv_id).returncode == 0, agent.output(conv_id)
    [output] = [e["content"] for e in agent.events(conv_id, "tool_result") if e["name"] == "terminal"]
    leaks = [line for line in output.splitlines() if line.startswith("LEAK")]
    assert "LEAK planted-control (planted-control)" in leaks, output
    others = [leak for leak in leaks if "planted-control" not in leak]
    # Outside a sandbox the `agent run -d` that the test started (with the key in its
    # environment, as a user's shell would) may still be exiting: it is not the run's.
    assert [leak for leak in others if " -m supervisor run " not in leak] == [], output
    if mode == "off":  # we are root: the run's own processes were read, and held no key
        runtime = agent.state(conv_id).runtime
        read = next(line for line in output.splitlines() if line.startswith("read:")).split()
        assert {f"/proc/{runtime.pid}/environ", f"/proc/{runtime.supervisor_pid}/environ"} <= set(read), output
        assert "AGENT_RUN_MARKER" in output  # the child's environment, printed by cat
    assert "OPENAI_API_KEY" not in output and "LLM_API_KEY" not in output
    agent("show", conv_id)
    agent("logs", conv_id)
    for path in agent.home.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    assert not [text for text in agent.transcript if key in text]


# --------------------------------------------------------------------------- an unprivileged user


def _unprivileged_python() -> list[str]:
    """A command that runs this project's Python as `nobody`, or a skip saying why not."""
    if os.getuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv(1) to run the CLI as an unprivileged user")
    import click

    site = str(Path(click.__file__).parent.parent)
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    for python in (sys.executable, "/usr/bin/python3"):
        # (It must be able to start itself again: sys.executable, for the run's processes.)
        check = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import supervisor.cli'], check=True)"
        probe = subprocess.run([*command, python, "-c", check],
                               env={"PYTHONPATH": f"{REPO}:{site}", "PATH": "/usr/bin:/bin"}, capture_output=True)
        if probe.returncode == 0:
            return [*command, python]
    pytest.skip(f"no Python that user nobody can run with this project ({probe.stderr.decode()[-200:]})")


def test_as_an_unprivileged_user_the_child_keeps_its_memory_to_itself(serve):
    """Non-dumpable: a command of the same user, even with --sandbox off, cannot read the
    child's environment or memory; the supervisor still knows its child (interrupt works)."""
    python = _unprivileged_python()
    import click

    base = Path(tempfile.mkdtemp(prefix="agent-nobody-"))
    try:
        base.chmod(0o755)
        for name in ("home", "ws", "user"):
            (base / name).mkdir()
            os.chown(base / name, 65534, 65534)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(base / "user"), "AGENT_HOME": str(base / "home"),
               "PYTHONPATH": f"{REPO}:{Path(click.__file__).parent.parent}"}
        probe = "cat /proc/$PPID/environ >/dev/null && echo environ-read; exec 3</proc/$PPID/mem && echo mem-read"
        server = serve(terminal(probe), slow_text(seconds=30))

        def agent(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*python, "-m", "supervisor", *args], env=env, cwd=base / "ws", capture_output=True,
                                  text=True, timeout=60)

        def tool_results() -> list[dict]:
            events = json.loads(agent("show", conv_id, "--json").stdout)["events"]
            return [e for e in events if e["type"] == "tool_result"]

        started = agent("run", "-d", "--sandbox", "off", "-m", "openai/scripted", "--base-url", server.url, "x")
        assert started.returncode == 0, started.stderr
        conv_id = started.stdout.strip()
        [result] = wait_until(tool_results, timeout=20)
        assert "Permission denied" in result["content"], result
        assert "environ-read" not in result["content"] and "mem-read" not in result["content"], result
        stopped = agent("interrupt", conv_id)  # during the model call that follows
        assert stopped.returncode == 0 and "stopped in" in stopped.stdout, stopped
        assert json.loads(agent("show", conv_id, "--json").stdout)["state"]["status"] == "paused"
    finally:
        shutil.rmtree(base, ignore_errors=True)
