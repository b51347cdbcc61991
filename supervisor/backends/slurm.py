"""The `slurm` backend: each start of a run is a Slurm batch job.

The job's script `exec`s the run's watcher, so the job's main process is the one
that already turns SIGINT and SIGTERM into our stop ladder: `scancel --batch
--signal=INT` reaches it alone, in milliseconds, and Slurm keeps its exit code (130
for a paused run). A plain `scancel` sends SIGTERM to every process of the job, then
SIGKILL after `KillWait`, much as our own escalation does.

Liveness: where the run's pid was recorded (same host and PID namespace) it is
checked exactly; anywhere else Slurm is asked (`squeue`). If Slurm cannot be asked,
the liveness is unknown, and nothing is concluded from that.

The API key is not sent through Slurm: Slurm keeps a job's environment on the
controller's disk. The job gets the submitting environment without the key
variables; the nodes must provide the key themselves (docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import re
import shlex
import shutil
import signal as signals
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agent_proc import conversation
from agent_proc.conversation import Runtime, load_state
from agent_proc.environment import MARKER_ENV, SUPERVISOR_ENV, same_host
from agent_proc.providers import SECRET_ENV_NAMES
from supervisor.backends import BackendError, Launch, Liveness, Probe, StartRequest

NAME = "slurm"
COMMAND_TIMEOUT = 30.0  # seconds for one Slurm command; a controller that is down fails faster
WARN_SECONDS = 90  # --timeout: Slurm warns the watcher (SIGUSR1) this long before its own limit
# Job states after which no process of the job is left. Any other state (PENDING,
# RUNNING, COMPLETING, SUSPENDED, one we do not know) counts as alive.
ENDED = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                   "DEADLINE", "OUT_OF_MEMORY", "REVOKED"})
PENDING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING"})


@dataclass(frozen=True)
class Job:
    """What Slurm says about one job."""

    id: str
    state: str
    reason: str
    node: str
    exit_status: int | None  # the wait status of the batch script, as Slurm keeps it
    cluster: str

    def ended_words(self) -> str:
        words = f"Slurm job {self.id} ended {self.state}"
        if self.exit_status is not None:
            code, sig = self.exit_status >> 8, self.exit_status & 0x7F
            words += f" (signal {sig})" if sig else f" (exit code {code})"
        if self.reason and self.reason != "None":
            words += f", reason {self.reason}"
        return words


def _command(argv: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None,
             timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command; `BackendError` if it is missing or hangs. Its exit status is
    left to the caller."""
    program = shutil.which(argv[0])
    if program is None:
        raise BackendError(f"{argv[0]} not found: Slurm's client commands are not installed here "
                           "(Debian: apt-get install slurm-client)")
    try:
        # SIGPIPE stays ignored (as Python has it), so that a connection the controller
        # drops under load is an error the command reports, not a silent death.
        return subprocess.run([program, *argv[1:]], input=stdin, capture_output=True, text=True, env=env,
                              timeout=timeout, restore_signals=False)
    except subprocess.TimeoutExpired:
        raise BackendError(f"{argv[0]} did not answer within {timeout:g} s") from None


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {result.returncode}"


# --------------------------------------------------------------------------- starting


def job_environment() -> dict[str, str]:
    """The submitting environment, as the job gets it (`--export=ALL` is Slurm's default),
    less the API keys and the markers of any run that this command belongs to."""
    drop = SECRET_ENV_NAMES | {MARKER_ENV, SUPERVISOR_ENV, "AGENT_KEY_FD"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def time_limit_args(run_timeout: float | None) -> list[str]:
    """Slurm's own limit behind --timeout, for when the watcher is gone.

    Slurm counts in minutes and acts within a minute of the time, so the limit is at
    least 90 s past --timeout: the watcher's own, exact, stop always comes first.
    The warning (SIGUSR1 to the watcher) asks it to stop the run as --timeout does.
    """
    if run_timeout is None:
        return []
    minutes = math.ceil(run_timeout / 60) + 2
    return [f"--time={minutes}", f"--signal=B:USR1@{WARN_SECONDS}"]


def batch_script(conv_id: str, request: StartRequest) -> str:
    watcher = [sys.executable, "-m", "supervisor.watcher", conv_id, "--grace", f"{request.grace:g}",
               "--backend", NAME, *(["--keep-partial"] if request.keep_partial else [])]
    return ("#!/bin/sh\n"
            f"# agent run {conv_id}: the job's main process is the run's watcher, so that\n"
            "# `scancel --batch --signal=INT` lands on the process that stops the run.\n"
            f"exec {shlex.join(watcher)}\n")


def start(conv_dir: Path, request: StartRequest) -> Launch:
    """Submit the run as a batch job (`sbatch`); return at once with its id."""
    state = load_state(conv_dir)
    argv = ["sbatch", "--parsable", f"--job-name=agent-{state.id}",
            f"--output={conv_dir / conversation.OUTPUT_FILE}", "--open-mode=append",
            f"--chdir={state.workspace}", "--no-requeue", *time_limit_args(request.run_timeout), *request.args]
    env = job_environment()
    env["AGENT_HOME"] = str(conv_dir.parent.parent)
    result = _command(argv, env=env, stdin=batch_script(state.id, request))
    if result.returncode < 0:
        raise BackendError(f"sbatch died of signal {-result.returncode}; the job may or may not be queued "
                           f"(squeue --name=agent-{state.id})")
    if result.returncode != 0:
        raise BackendError(f"sbatch refused the job: {_error_line(result)}")
    job_id, _, cluster = result.stdout.strip().partition(";")
    if not job_id.isdigit():
        raise BackendError(f"sbatch printed no job id: {result.stdout.strip()!r}")
    return Launch(job={"id": job_id, "cluster": cluster or None, "args": list(request.args)})


def unavailable() -> str | None:
    """Why runs cannot be submitted from here."""
    absent = [c for c in ("sbatch", "squeue", "scancel") if shutil.which(c) is None]
    if absent:
        return f"{', '.join(absent)} not found: Slurm's client commands are not installed here " \
               "(Debian: apt-get install slurm-client)"
    return None


def this_job() -> dict[str, str | None] | None:
    """The job this process runs in, from the variables Slurm gives a job."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    return {"id": job_id, "cluster": os.environ.get("SLURM_CLUSTER_NAME"), "node": os.environ.get("SLURMD_NODENAME")}


# --------------------------------------------------------------------------- signalling


def _job_id(runtime: Runtime) -> str:
    job_id = (runtime.job or {}).get("id")
    if not job_id:
        raise BackendError("the run has no Slurm job recorded")
    return str(job_id)


def signal(runtime: Runtime, sig: int, *, everyone: bool = False) -> bool:
    """`scancel --batch` (the watcher alone) or `--full` (every process of the job)."""
    name = signals.Signals(sig).name.removeprefix("SIG")
    result = _command(["scancel", "--full" if everyone else "--batch", f"--signal={name}", _job_id(runtime)])
    if result.returncode == 0:
        return True
    if _ENDED_ALREADY.search(result.stderr):
        return False
    raise BackendError(f"scancel failed: {_error_line(result)}")


_ENDED_ALREADY = re.compile(r"already completing or completed|Invalid job id", re.IGNORECASE)


def cancel(runtime: Runtime) -> None:
    """Plain `scancel`: a pending job is removed; a running one gets SIGTERM, then
    SIGKILL after the cluster's KillWait."""
    result = _command(["scancel", _job_id(runtime)])
    if result.returncode != 0 and not _ENDED_ALREADY.search(result.stderr):
        raise BackendError(f"scancel failed: {_error_line(result)}")


# --------------------------------------------------------------------------- liveness

_FIELDS = "JobID:40|,State:30|,Reason:200|,NodeList:200|,exit_code:12|,Cluster:100|"
_known: dict[str, Job | None] = {}  # what one command has learnt from squeue, by job id
UNREACHABLE_MEMORY = 30.0  # seconds a failure to reach Slurm is remembered, so `ps` pays for it once
_unreachable: tuple[float, str] | None = None  # when squeue last failed, and how


def query(job_ids: list[str]) -> dict[str, Job]:
    """The jobs Slurm still knows among `job_ids`, in one `squeue` call. A controller
    that cannot be reached is not asked again for a while (it takes seconds to fail)."""
    global _unreachable
    if not job_ids:
        return {}
    if _unreachable and time.monotonic() - _unreachable[0] < UNREACHABLE_MEMORY:
        raise BackendError(_unreachable[1])
    try:
        result = _command(["squeue", "--noheader", "--states=all", f"--jobs={','.join(job_ids)}",
                           f"--Format={_FIELDS}"])
        if result.returncode != 0 and "Invalid job id" not in result.stderr:
            raise BackendError(f"squeue failed: {_error_line(result)}")
    except BackendError as error:
        _unreachable = (time.monotonic(), str(error))
        raise
    if result.returncode != 0:
        return {}  # none of them is known any more
    jobs = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 6 or not cells[0]:
            continue
        status = int(cells[4]) if cells[4].isdigit() else None
        jobs[cells[0]] = Job(cells[0], cells[1].split()[0] if cells[1] else "", cells[2], cells[3], status, cells[5])
    return jobs


def prefetch(runtimes: list[Runtime]) -> None:
    """Ask Slurm about many runs in one call (`agent ps`); `probe` then uses the answers."""
    ids = sorted({str(r.job["id"]) for r in runtimes if r.backend == NAME and r.job and r.job.get("id")})
    with contextlib.suppress(BackendError):
        found = query(ids)
        _known.update({job_id: found.get(job_id) for job_id in ids})


def _job(job_id: str) -> Job | None:
    if job_id not in _known:
        return query([job_id]).get(job_id)
    return _known[job_id]


def probe(runtime: Runtime, *, ask_scheduler: bool = False) -> Probe:
    job_id = _job_id(runtime)
    if runtime.pid and same_host(runtime.host) and not ask_scheduler:
        # The run's process is on this machine: its pid says it exactly.
        from supervisor import processes

        if processes.identify(runtime) is not None:
            return Probe(Liveness.ALIVE, describe(runtime))
        try:
            job = _job(job_id)
            slurm_says = job.ended_words() if job and job.state in ENDED else f"Slurm job {job_id} still there"
        except BackendError as error:
            slurm_says = str(error)
        return Probe(Liveness.GONE, f"process {runtime.pid} is gone without recording an outcome ({slurm_says})")
    try:
        job = _job(job_id)
    except BackendError as error:
        return Probe(Liveness.UNKNOWN, f"cannot ask Slurm about job {job_id}: {error}")
    if job is None:
        return Probe(Liveness.GONE, f"Slurm job {job_id} is gone without the run recording an outcome "
                                    "(Slurm no longer knows the job)")
    if job.state in ENDED:
        return Probe(Liveness.GONE, f"{job.ended_words()} without the run recording an outcome",
                     cancelled=job.state == "CANCELLED")
    if job.state in PENDING:
        return Probe(Liveness.ALIVE, f"Slurm job {job_id} {job.state.lower()} ({job.reason})")
    return Probe(Liveness.ALIVE, f"Slurm job {job_id} {job.state.lower()} on {job.node or '?'}")


def describe(runtime: Runtime) -> str:
    job = runtime.job or {}
    where = f" on {job['node']}" if job.get("node") else ""
    cluster = f" ({job['cluster']})" if job.get("cluster") else ""
    return f"slurm job {job.get('id')}{where}{cluster}"


# --------------------------------------------------------------------------- checks for `agent doctor`

NETWORK_FILESYSTEMS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "glusterfs", "fuse.glusterfs",
                       "panfs", "wekafs", "fuse.sshfs", "cifs", "smb3", "afs", "9p")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: a warning, not a failure
    detail: str


def filesystem_type(path: Path) -> tuple[str, str]:
    """The mount point and filesystem type that hold `path` (from /proc/self/mounts)."""
    path = path.resolve()
    best = ("/", "unknown")
    with contextlib.suppress(OSError), open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 3:
                continue
            point = fields[1].replace("\\040", " ")
            if (path == Path(point) or Path(point) in path.parents) and len(point) >= len(best[0]):
                best = (point, fields[2])
    return best


def _flock_is_enforced(directory: Path) -> tuple[bool, str]:
    """Whether an exclusive `flock` in `directory` keeps a second holder out."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".doctor-flock.")
    other = os.open(name, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True, "an exclusive flock keeps a second holder out"
            raise
        return False, "a second exclusive flock was granted while the first was held"
    except OSError as error:
        return False, f"flock failed: {error.strerror} (mount with locking: NFS lockd, Lustre -o flock)"
    finally:
        os.close(other)
        os.close(fd)
        os.unlink(name)


def _node_sees_home(home: Path, timeout: float) -> Check:
    """Submit a small job that must find a file we write in `home`, and must be refused
    the flock we hold on it: shared storage, with locks that hold across machines."""
    probe_dir = Path(tempfile.mkdtemp(dir=home, prefix=".doctor-"))
    token = os.urandom(8).hex()
    (probe_dir / "token").write_text(token)
    lock_fd = os.open(probe_dir / "token", os.O_RDWR)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    check = (
        "import fcntl, os, socket, sys\n"
        f"d = {str(probe_dir)!r}\n"
        "fd = os.open(d + '/token', os.O_RDWR)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); held = 'granted'\n"
        "except BlockingIOError:\n    held = 'refused'\n"
        "except OSError as e:\n    held = 'error ' + e.strerror\n"
        "open(d + '/answer', 'w').write(open(d + '/token').read() + ' ' + held + ' ' + socket.gethostname())\n"
    )
    try:
        result = _command(["sbatch", "--parsable", "--job-name=agent-doctor", f"--output={probe_dir}/job.log",
                           f"--chdir={probe_dir}", f"--wrap={shlex.join([sys.executable, '-c', check])}"],
                          env=job_environment())
        if result.returncode != 0:
            return Check("a node sees $AGENT_HOME", False, f"sbatch refused a test job: {_error_line(result)}")
        job_id = result.stdout.strip().partition(";")[0]
        deadline = time.monotonic() + timeout
        answer = probe_dir / "answer"
        while not answer.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not answer.exists():
            _command(["scancel", job_id])
            return Check("a node sees $AGENT_HOME", None, f"test job {job_id} gave no answer within {timeout:g} s "
                         "(still queued, or the node cannot see $AGENT_HOME)")
        seen, held, node = (answer.read_text().split() + ["?", "?", "?"])[:3]
        if seen != token:
            return Check("a node sees $AGENT_HOME", False, f"node {node} read something else in {probe_dir}")
        if held != "refused":
            return Check("a node sees $AGENT_HOME", False, f"node {node} sees $AGENT_HOME but its flock was {held} "
                         "while this machine held it: locks do not hold across machines")
        return Check("a node sees $AGENT_HOME", True, f"node {node} read our file and was refused our flock")
    finally:
        os.close(lock_fd)
        shutil.rmtree(probe_dir, ignore_errors=True)


def doctor_checks(home: Path, *, submit_test_job: bool = False, timeout: float = 60.0) -> list[Check]:
    """What `agent doctor` should check before runs go to Slurm: the commands, the
    controller, and that `home` ($AGENT_HOME) is on storage every node sees with
    working `flock`. With `submit_test_job`, a job on a node proves the last part."""
    checks = []
    absent = [c for c in ("sbatch", "squeue", "scancel") if shutil.which(c) is None]
    checks.append(Check("Slurm commands", not absent, f"missing: {', '.join(absent)}" if absent else "found"))
    if not absent:
        try:
            result = _command(["squeue", "--noheader", "--jobs=1", "--states=all"], timeout=15)
            reachable = result.returncode == 0 or "Invalid job id" in result.stderr
            checks.append(Check("Slurm controller", reachable, "answers" if reachable else _error_line(result)))
        except BackendError as error:
            checks.append(Check("Slurm controller", False, str(error)))
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    point, fstype = filesystem_type(home)
    shared = fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse.")
    checks.append(Check("$AGENT_HOME on shared storage", True if shared else None,
                        f"{home} is on {fstype} ({point})" + ("" if shared else
                        ": a local filesystem; only jobs on this machine will see it")))
    enforced, detail = _flock_is_enforced(home)
    checks.append(Check("flock in $AGENT_HOME", enforced, detail))
    if submit_test_job and not absent:
        checks.append(_node_sees_home(home, timeout))
    return checks
