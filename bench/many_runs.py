"""How fast are listings and reports with 10,000 conversations on disk?

Makes a home with N conversations (default 10,000) through the project's own
conversation module: each has a created event (some with a name, most with labels),
the prompt, one to three model calls with usage and cost, and a final status; the
times are spread over the last 60 days. A few are really running: each is a real
`sleep` process carrying the run marker, so `ps` finds them alive exactly as it
finds a real run.

Fixture shortcuts, for speed only: fsync is skipped while the home is being made
(the data need not survive a crash of the benchmark) and event times are chosen
rather than taken from the clock.

Then it runs each command as a fresh process (`python -m supervisor ...`, as a
user would) and prints the median and p95 wall time. The index is built by a first,
untimed listing; `cold` is that first listing's time.

Usage: python bench/many_runs.py [-n 10000] [--samples 15] [--home DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from agent_proc import conversation  # noqa: E402
from agent_proc.environment import MARKER_ENV, process_start_ticks  # noqa: E402
from agent_proc.status import Status  # noqa: E402

MODELS = ["openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "ollama/llama3"]
TEAMS = ["infra", "web", "data", "ml"]
RUNNING = 5

# What is timed: (what, arguments). A command added here is timed over the same home;
# `agent events` start-up is timed by bench/events_latency.py.
COMMANDS: list[tuple[str, list[str]]] = [
    ("ps", ["ps"]),
    ("ps -a", ["ps", "-a"]),
    ("ps -a --filter label=team=data", ["ps", "-a", "--filter", "label=team=data"]),
    ("ps --filter label=team=data", ["ps", "--filter", "label=team=data"]),
    ("ps -n 20", ["ps", "-n", "20"]),
    ("cost", ["cost"]),
    ("cost --by day --since 7d", ["cost", "--by", "day", "--since", "7d"]),
]


class Clock:
    """Event times chosen by the fixture (`conversation.now_iso` is swapped for this)."""

    def __init__(self) -> None:
        self.at = datetime.now(timezone.utc)

    def __call__(self) -> str:
        self.at += timedelta(milliseconds=350)
        return self.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_conversation(home: Path, n: int, rng: random.Random, clock: Clock) -> None:
    clock.at = datetime.now(timezone.utc) - timedelta(days=60 * (1 - n / 10_000), minutes=rng.uniform(0, 30))
    model = rng.choice(MODELS)
    labels = {"team": rng.choice(TEAMS)} if n % 10 else {}
    if n % 3 == 0:
        labels["job"] = "nightly"
    conv_dir = conversation.create(
        model=model, workspace=str(home), base_url=None, prompt=f"task {n}: summarise the changes\nin detail",
        name=f"job-{n}" if n % 4 == 0 else None, labels=labels, home=home)
    with conversation.transaction(conv_dir) as txn:
        txn.set_status(Status.STARTING, "starting", token=f"{conv_dir.name}-bench", starter={})
        txn.set_status(Status.RUNNING, "started")
        for call in range(rng.randint(1, 3)):
            priced = not model.startswith("ollama")
            txn.record("model_message", content=f"step {call}", tool_calls=[], usage={
                "prompt_tokens": 1200, "completion_tokens": 150}, cost=0.004 if priced else None,
                cost_estimated=call == 2, model=model, outcome="complete", partial=False)
        ending = rng.random()
        if ending < 0.8:
            txn.set_status(Status.FINISHED, "finished", answer="done")
        elif ending < 0.9:
            txn.set_status(Status.PAUSED, "interrupted by SIGINT", kind="interrupt")
        else:
            txn.set_status(Status.ERROR, "model API failed", kind="llm")


def start_running(home: Path, count: int) -> list[subprocess.Popen[bytes]]:
    """Conversations whose process is alive: real processes carrying their run marker."""
    sleepers = []
    for n in range(count):
        conv_dir = conversation.create(model="openai/gpt-4o", workspace=str(home), base_url=None,
                                       prompt=f"live task {n}", labels={"team": "data"}, home=home)
        marker = f"{conv_dir.name}-bench"
        sleeper = subprocess.Popen(["sleep", "3600"], env={**os.environ, MARKER_ENV: marker})
        sleepers.append(sleeper)
        with conversation.transaction(conv_dir) as txn:
            txn.record("started", pid=sleeper.pid, create_time=psutil.Process(sleeper.pid).create_time(),
                       start_ticks=process_start_ticks(sleeper.pid), marker=marker, supervisor_pid=None)
            txn.set_status(Status.STARTING, "starting", token=marker, starter={})
            txn.set_status(Status.RUNNING, "started")
    return sleepers


def make_home(home: Path, count: int) -> None:
    rng = random.Random(11)
    clock = Clock()
    real_fsync, real_now = os.fsync, conversation.now_iso
    os.fsync, conversation.now_iso = (lambda fd: None), clock
    try:
        for n in range(count):
            make_conversation(home, n, rng, clock)
    finally:
        os.fsync, conversation.now_iso = real_fsync, real_now


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[bytes]]:
    """Wall time and CPU time (user + system) of one command, in ms. On a busy machine
    the CPU time is the steadier measure of the work a command does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "supervisor", *args], env=env, capture_output=True)
    wall = (time.perf_counter() - began) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu, result


def median_p95(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="conversations to make")
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--home", type=Path, help="reuse (or make) this home instead of a temporary one")
    parser.add_argument("--keep", action="store_true", help="do not delete the home afterwards")
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="agent-many-"))
    if not conversation.list_dirs(home):
        began = time.perf_counter()
        make_home(home, args.n)
        print(f"made {args.n} conversations in {time.perf_counter() - began:.1f} s ({home})")
    sleepers = start_running(home, RUNNING)
    env = {**os.environ, "AGENT_HOME": str(home), "PYTHONPATH": str(REPO), "COLUMNS": "120"}
    try:
        (home / "index.json").unlink(missing_ok=True)
        cold, _, result = timed(["ps", "-a", "-q"], env)
        listed = len(result.stdout.split())
        print(f"{len(conversation.list_dirs(home))} conversations, {listed} listed by ps -a; "
              f"first listing (builds the index): {cold:.0f} ms")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'command':<34}{'wall median':>12}{'p95':>7}{'cpu median':>12}{'p95':>7}{'lines':>8}  (ms)")
        for what, command in COMMANDS:
            walls, cpus = [], []
            for _ in range(args.samples):
                wall, cpu, result = timed(command, env)
                if result.returncode != 0:
                    print(f"{what}: exit {result.returncode}: {result.stderr.decode()[-300:]}")
                    return 1
                walls.append(wall)
                cpus.append(cpu)
            (wall_median, wall_p95), (cpu_median, cpu_p95) = median_p95(walls), median_p95(cpus)
            print(f"{what:<34}{wall_median:>12.0f}{wall_p95:>7.0f}{cpu_median:>12.0f}{cpu_p95:>7.0f}"
                  f"{len(result.stdout.splitlines()):>8}")
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
        if not args.keep and not args.home:
            shutil.rmtree(home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
