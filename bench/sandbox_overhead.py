"""How much time does the sandbox add to one terminal command?

Runs the same command N times through the terminal tool (`RunningCommand`, exactly
as a run does) unconfined (`--sandbox off`) and in each sandbox (`workspace`,
`read-only`, `workspace` with `--network off`), interleaved so that a busy moment
of the machine falls on all of them alike. Prints the median and p95 of each, and
what the sandbox adds: the median and p95 of the difference between each sandboxed
command and the unconfined one run next to it.

Usage: python bench/sandbox_overhead.py [-n 200] [--command true]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_proc import sandbox  # noqa: E402
from agent_proc.conversation import Settings  # noqa: E402
from agent_proc.tools import RunningCommand  # noqa: E402

VARIANTS = {
    "off": Settings(sandbox="off"),
    "workspace": Settings(sandbox="workspace"),
    "read-only": Settings(sandbox="read-only"),
    "workspace, network off": Settings(sandbox="workspace", network=False),
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def one_command(command: str, workspace: str, settings: Settings) -> float:
    """Milliseconds from starting the command to having its result."""
    began = time.perf_counter()
    result = RunningCommand(command, workspace, settings).wait(60)
    took = (time.perf_counter() - began) * 1000
    if result.exit_code != 0:
        raise SystemExit(f"{command!r} failed with {settings.sandbox}: {result.output}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="commands per variant")
    parser.add_argument("--command", default="true", help="the shell command to run  [default: true]")
    args = parser.parse_args()

    workspace = tempfile.mkdtemp(prefix="agent-bench-")
    os.environ["AGENT_HOME"] = str(Path(workspace) / "home")  # hidden from the sandbox, as in a run
    (Path(workspace) / "home").mkdir()
    try:
        sandbox.check(sandbox.Policy.of(Settings(), workspace))
    except sandbox.SandboxUnavailable as error:
        print(f"no sandbox on this machine: {error}", file=sys.stderr)
        return 1
    print(f"bwrap: {sandbox.find_bwrap()}; command: {args.command!r}; {args.n} runs of each, interleaved")

    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for settings in VARIANTS.values():  # warm up: caches, the first bwrap exec
        one_command(args.command, workspace, settings)
    for _ in range(args.n):
        for name, settings in VARIANTS.items():
            times[name].append(one_command(args.command, workspace, settings))

    print(f"\n{'variant':<24}{'median ms':>10}{'p95 ms':>9}{'added: median':>16}{'p95':>8}")
    for name, values in times.items():
        line = f"{name:<24}{statistics.median(values):>10.1f}{percentile(values, 95):>9.1f}"
        if name != "off":
            added = [mine - theirs for mine, theirs in zip(values, times["off"], strict=True)]
            line += f"{statistics.median(added):>16.1f}{percentile(added, 95):>8.1f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
