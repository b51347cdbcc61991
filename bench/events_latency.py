"""How soon does `agent events` show a status change, and what does it cost while idle?

Makes C conversations in a fresh $AGENT_HOME (copies of one real conversation, so that
10,000 take seconds), starts `agent events`, and measures
  - start-up: the wall time of `agent events --until now` (a fresh process that
    watches every conversation, then stops), median and p95 of 10,
  - idle: the CPU seconds it uses in 10 s while nothing happens,
  - latency: N times, a status change is written to one conversation (a real
    transaction, fsync included) and the time until its line is read from the
    command's stdout; median and p95.

Usage: python bench/events_latency.py [-c 10000] [-n 50] [--idle 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_proc import conversation  # noqa: E402
from agent_proc.status import Status  # noqa: E402
from supervisor.events import watch_count  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def make_conversations(home: Path, count: int) -> list[Path]:
    """`count` idle conversations: one made properly, the rest copies of it."""
    model = conversation.create(model="openai/bench", workspace="/tmp", base_url="http://127.0.0.1:9",
                                prompt="bench", home=home)
    state = json.loads((model / conversation.STATE_FILE).read_text())
    events = (model / conversation.EVENTS_FILE).read_bytes()
    dirs = [model]
    for _ in range(count - 1):
        conv_id = conversation.new_id()
        conv_dir = model.parent / conv_id
        conv_dir.mkdir(mode=0o700)
        (conv_dir / conversation.INBOX_DIR).mkdir(mode=0o700)
        (conv_dir / conversation.STATE_FILE).write_text(json.dumps({**state, "id": conv_id}))
        (conv_dir / conversation.EVENTS_FILE).write_bytes(events)
        dirs.append(conv_dir)
    return dirs


def change_status(conv_dir: Path) -> None:
    """One status change: idle or paused -> running, running -> paused."""
    with conversation.transaction(conv_dir) as txn:
        target = Status.PAUSED if txn.state.status is Status.RUNNING else Status.RUNNING
        txn.set_status(target, "bench")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--conversations", type=int, default=10000)
    parser.add_argument("-n", "--changes", type=int, default=50)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idleness to measure")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="agent-bench-events-"))
    began = time.perf_counter()
    dirs = make_conversations(home, args.conversations)
    print(f"{len(dirs)} conversations made in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    env = {**os.environ, "AGENT_HOME": str(home), "PYTHONPATH": str(REPO)}

    startups, baseline = [], []
    for _ in range(10):
        launched = time.perf_counter()
        subprocess.run([sys.executable, "-m", "supervisor", "--version"], env=env, check=True, capture_output=True)
        baseline.append((time.perf_counter() - launched) * 1000)
        launched = time.perf_counter()
        subprocess.run([sys.executable, "-m", "supervisor", "events", "--until", "now"], env=env, check=True)
        startups.append((time.perf_counter() - launched) * 1000)
    events = subprocess.Popen([sys.executable, "-m", "supervisor", "events"], stdout=subprocess.PIPE, env=env)
    try:
        while watch_count(events.pid) < len(dirs) + 1:
            time.sleep(0.05)
        process = psutil.Process(events.pid)
        before = process.cpu_times()
        time.sleep(args.idle)
        after = process.cpu_times()
        idle_cpu = (after.user - before.user) + (after.system - before.system)

        latencies, pending = [], b""
        for _ in range(args.changes):
            target = random.choice(dirs)
            changed = time.perf_counter()
            change_status(target)
            while b"\n" not in pending:
                select.select([events.stdout], [], [], 10)
                pending += os.read(events.stdout.fileno(), 65536)
            shown = time.perf_counter()
            line, pending = pending.split(b"\n", 1)
            assert json.loads(line)["id"] == target.name, line
            latencies.append((shown - changed) * 1000)
            time.sleep(0.05)
        busy = process.cpu_times()
        busy_cpu = (busy.user - after.user) + (busy.system - after.system)
    finally:
        events.kill()
        events.wait()
        shutil.rmtree(home, ignore_errors=True)

    print(f"conversations: {len(dirs)}")
    print(f"start-up (`agent events --until now`): median {statistics.median(startups):.0f} ms, "
          f"p95 {percentile(startups, 95):.0f} ms (`agent --version`: {statistics.median(baseline):.0f} ms)")
    print(f"CPU while idle for {args.idle:.0f} s: {idle_cpu:.3f} s")
    print(f"change -> shown ({args.changes} changes, fsync of the change included): "
          f"median {statistics.median(latencies):.1f} ms, p95 {percentile(latencies, 95):.1f} ms, "
          f"max {max(latencies):.1f} ms")
    print(f"CPU for those {args.changes} changes: {busy_cpu:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
