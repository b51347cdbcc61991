"""How fast does `agent interrupt` stop a run whose model call is in flight?

Starts the scripted server on 127.0.0.1, then N times: `agent run -d` with a slowly
streamed answer, waits until text is arriving, and runs `agent interrupt ID --json`.
Prints medians and p95 of
  - the child's exit after SIGINT (as seen by the interrupter, polling every 1 ms),
  - the wall time of the whole `agent interrupt` command (a fresh Python process),
  - the wall time of `agent ps` and of `agent --version`, for CLI start-up.

Usage: python bench/interrupt_latency.py [-n 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from supervisor.scripted_server import start_server  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    began = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    return (time.perf_counter() - began) * 1000, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="interrupts to measure")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="agent-bench-")
    env = {**os.environ, "AGENT_HOME": home, "PYTHONPATH": str(REPO)}
    agent = [sys.executable, "-m", "supervisor"]
    text = "thinking... " * 400
    server = start_server({"steps": [{"content": text, "chunk_chars": 8, "chunk_delay": 0.05}],
                           "when_exhausted": "repeat_last"})
    exits, walls = [], []
    try:
        for _ in range(args.n):
            started = subprocess.run([*agent, "run", "-d", "-m", "openai/bench", "--base-url", server.url, "go"],
                                     capture_output=True, text=True, env=env, check=True)
            conv_id = started.stdout.strip()
            output = Path(home, "conversations", conv_id, "output.log")
            while b"thinking" not in output.read_bytes():
                time.sleep(0.01)
            time.sleep(0.2)
            wall, result = timed([*agent, "interrupt", conv_id, "--json"], env)
            report = json.loads(result.stdout)
            assert report["method"] == "sigint", report
            exits.append(report["exit_ms"])
            walls.append(wall)
        ps = [timed([*agent, "ps"], env)[0] for _ in range(10)]
        version = [timed([*agent, "--version"], env)[0] for _ in range(10)]
        bare = [timed([sys.executable, "-c", "pass"], env)[0] for _ in range(10)]
    finally:
        server.stop()

    print(f"interrupts measured: {args.n}  (python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    print(f"{'':34}{'median':>10}{'p95':>10}")
    for label, values in (
        ("child exit after SIGINT (ms)", exits),
        ("`agent interrupt` wall time (ms)", walls),
        ("`agent ps` wall time (ms)", ps),
        ("`agent --version` wall time (ms)", version),
        ("`python -c pass` (ms)", bare),
    ):
        print(f"{label:34}{statistics.median(values):>10.1f}{percentile(values, 95):>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
