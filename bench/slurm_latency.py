"""How long do starting and interrupting a run take through Slurm, next to locally?

Starts the scripted server on 127.0.0.1, and uses the cluster named by $SLURM_CONF;
without it (and as root) it starts a single-node Slurm of its own from Debian's
packages (`tests/slurm_cluster.py`). Then N times for each backend (`local`, `slurm`):
`agent run -d` with a slowly streamed answer, then `agent interrupt ID --json` once
text is arriving. The bench polls the conversation's state every 2 ms and prints
medians and p95 of
  - submit to running: from running `agent run -d` to the child recording `running`
    (through Slurm: sbatch, the scheduler's allocation, the job's launch, the watcher
    and the child starting on the node);
  - of that, Slurm's share: from the submission to the job's start, as recorded;
  - interrupt to paused: from running `agent interrupt` to the conversation `paused`;
  - the whole `agent interrupt` command (through Slurm it also waits for the job to end).

Usage: python bench/slurm_latency.py [-n 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_proc.conversation import load_state  # noqa: E402
from supervisor.scripted_server import start_server  # noqa: E402
from tests import slurm_cluster  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def wait_status(conv_dir: Path, wanted: str, timeout: float = 60) -> float:
    """Poll the state until `wanted`; return when it was seen (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if load_state(conv_dir).status.value == wanted:
            return time.perf_counter()
        time.sleep(0.002)
    raise TimeoutError(f"{conv_dir.name} not {wanted} after {timeout} s")


def seconds_between(earlier: str, later: str) -> float:
    parse = lambda iso: datetime.fromisoformat(iso.replace("Z", "+00:00"))  # noqa: E731
    return (parse(later) - parse(earlier)).total_seconds()


def measure(backend: str, n: int, env: dict[str, str], url: str) -> dict[str, list[float]]:
    agent = [sys.executable, "-m", "supervisor"]
    home = Path(env["AGENT_HOME"])
    found: dict[str, list[float]] = {"start": [], "queue": [], "paused": [], "command": []}
    for _ in range(n):
        began = time.perf_counter()
        run = subprocess.run([*agent, "run", "-d", "--backend", backend, "-m", "openai/bench", "--base-url", url, "go"],
                             capture_output=True, text=True, env=env, check=True)
        conv_dir = home / "conversations" / run.stdout.strip()
        running = wait_status(conv_dir, "running")
        found["start"].append((running - began) * 1000)
        job = load_state(conv_dir).runtime.job
        if job:
            found["queue"].append(seconds_between(job["submitted_at"], job["started_at"]) * 1000)
        while b"thinking" not in (conv_dir / "output.log").read_bytes():
            time.sleep(0.01)
        time.sleep(0.2)
        began = time.perf_counter()
        stopper = subprocess.Popen([*agent, "interrupt", conv_dir.name, "--json"], stdout=subprocess.PIPE, text=True,
                                   env=env)
        paused = wait_status(conv_dir, "paused")
        out, _ = stopper.communicate(timeout=120)
        finished = time.perf_counter()
        assert json.loads(out)["stop"]["method"] == "sigint", out
        found["paused"].append((paused - began) * 1000)
        found["command"].append((finished - began) * 1000)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="runs per backend")
    args = parser.parse_args()

    cluster = None
    if not os.environ.get("SLURM_CONF"):
        if absent := slurm_cluster.missing_programs():
            sys.exit(f"{slurm_cluster.INSTALL_HINT} (missing: {', '.join(absent)}), or set SLURM_CONF")
        cluster = slurm_cluster.start(Path(tempfile.mkdtemp(prefix="agent-bench-slurm-")))
    home = tempfile.mkdtemp(prefix="agent-bench-")
    env = {**os.environ, "AGENT_HOME": home, "PYTHONPATH": str(REPO), **(cluster.env() if cluster else {})}
    server = start_server({"steps": [{"content": "thinking... " * 400, "chunk_chars": 8, "chunk_delay": 0.05}],
                           "when_exhausted": "repeat_last"})
    try:
        results = {backend: measure(backend, args.n, env, server.url) for backend in ("local", "slurm")}
    finally:
        server.stop()
        if cluster:
            cluster.stop()
            shutil.rmtree(cluster.root, ignore_errors=True)

    print(f"runs per backend: {args.n}  (python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    print(f"{'':42}{'local median':>14}{'p95':>8}{'slurm median':>14}{'p95':>8}")
    for key, label in (("start", "submit to running (ms)"), ("queue", "  of which Slurm: submitted to job start"),
                       ("paused", "interrupt to paused (ms)"), ("command", "`agent interrupt` returns (ms)")):
        cells = ""
        for backend in ("local", "slurm"):
            values = results[backend][key]
            shown = (statistics.median(values), percentile(values, 95)) if values else None
            cells += f"{shown[0]:>14.0f}{shown[1]:>8.0f}" if shown else f"{'-':>14}{'-':>8}"
        print(f"{label:42}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
