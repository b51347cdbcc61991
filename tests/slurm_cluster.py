"""A real single-node Slurm cluster for the tests and the benchmark, from Debian's packages.

`start(root)` brings up munge, slurmctld and slurmd with everything (configuration,
key, sockets, state, spool, logs) under `root`: the machine's own configuration is
never read or touched. Every daemon talks on loopback only; the one node is this
machine at 127.0.0.1. There are no cgroups (`proctrack/linuxproc`, `task/none`), so
it runs in a container without systemd. Commands reach the cluster through
`SLURM_CONF` (see `Cluster.env`).

`python tests/slurm_cluster.py DIR` starts one and keeps it up until Ctrl+C, for
trying things by hand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scancel", "squeue", "scontrol")
INSTALL_HINT = "Slurm is not installed; as root: apt-get install -y slurm-wlm munge"
CPUS = 64  # declared, not real: lets many one-CPU jobs run at once on a small machine
KILL_WAIT = 5  # seconds between the SIGTERM and the SIGKILL of a cancelled job


def missing_programs() -> list[str]:
    """The programs a cluster needs that are not on PATH (or in /usr/sbin)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [p for p in PROGRAMS if shutil.which(p, path=path) is None]


def _program(name: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    assert found, name
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    root: Path
    name: str
    node: str
    conf: Path
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """What a command needs in its environment to use this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def command(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (`scontrol`, `squeue`, ...) against this cluster."""
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout,
                              env={**os.environ, **self.env()})

    def log(self, daemon: str) -> str:
        with contextlib.suppress(OSError):
            return (self.root / f"{daemon}.log").read_text(errors="replace")
        return ""

    def stop(self) -> None:
        """Stop the daemons (slurmd first, so no job is left running), then wait for them."""
        for process in reversed(self.daemons):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.daemons.clear()


def _configuration(root: Path, name: str, node: str) -> str:
    return f"""\
ClusterName={name}
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
ReturnToService=2
KillWait={KILL_WAIT}
MinJobAge=300
InactiveLimit=0
MpiDefault=none
MailProg=/bin/true
NodeName={node} NodeAddr=127.0.0.1 NodeHostname={node} CPUs={CPUS} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _start_daemon(cluster: Cluster, argv: list[str], log: str) -> None:
    out = open(cluster.root / log, "ab")  # noqa: SIM115 - handed to the daemon
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                   env={**os.environ, **cluster.env()}, start_new_session=True)
    finally:
        out.close()
    cluster.daemons.append(process)


def _wait_for(cluster: Cluster, what: str, ready: callable, timeout: float = 30.0) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while not ready():
        for process in cluster.daemons:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited ({process.returncode}) before {what}:\n"
                                   f"{cluster.log('munged')}{cluster.log('slurmctld')}{cluster.log('slurmd')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}:\n{cluster.log('slurmctld')}{cluster.log('slurmd')}")
        time.sleep(0.05)


def start(root: Path, name: str = "agenttest") -> Cluster:
    """Start munge, slurmctld and slurmd under `root`; return once the node is idle."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    node = socket.gethostname().split(".")[0]
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir(mode=0o700, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(_configuration(root, name, node))
    cluster = Cluster(root, name, node, conf)
    key = root / "munge" / "munge.key"
    subprocess.run([_program("mungekey"), "--create", "--force", f"--keyfile={key}"], check=True,
                   capture_output=True)
    key.chmod(0o400)
    try:
        _start_daemon(cluster, [_program("munged"), "--foreground", "--force", f"--socket={root}/munge/munge.socket",
                                f"--key-file={key}", f"--pid-file={root}/munge/munged.pid",
                                f"--seed-file={root}/munge/munged.seed", f"--log-file={root}/munged.log"],
                      "munged.out")
        _wait_for(cluster, "munged", lambda: (root / "munge" / "munge.socket").exists())
        _start_daemon(cluster, [_program("slurmctld"), "-D", "-c", "-i", "-f", str(conf)], "slurmctld.out")
        _wait_for(cluster, "slurmctld", lambda: cluster.command("scontrol", "ping", check=False).returncode == 0
                  and "UP" in cluster.command("scontrol", "ping", check=False).stdout)
        _start_daemon(cluster, [_program("slurmd"), "-D", "-N", node, "-f", str(conf)], "slurmd.out")
        _wait_for(cluster, "the node to be idle",
                  lambda: "idle" in cluster.command("sinfo", "-h", "-o", "%T", check=False).stdout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


if __name__ == "__main__":
    if absent := missing_programs():
        sys.exit(f"{INSTALL_HINT} (missing: {', '.join(absent)})")
    up = start(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/agent-slurm").absolute())
    print(f"export SLURM_CONF={up.conf}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        up.stop()
