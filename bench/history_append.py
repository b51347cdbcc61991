"""Does recording an event cost the same in a long conversation as in a short one?

Appends events one transaction at a time (each one an fsync and a state checkpoint,
as the child does) to a conversation that already holds N events, for growing N,
and prints the median cost of one transaction and of one `load_state` (what every
reader pays). Both should stay flat: the history is appended to, never rewritten.

Usage: python bench/history_append.py [--sizes 100,10000,50000] [--samples 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_proc import conversation  # noqa: E402

EVENT = {"content": "x" * 400, "source": "send"}


def grow(conv_dir: Path, count: int) -> None:
    """Add `count` events quickly (in large transactions)."""
    while count > 0:
        batch = min(count, 5000)
        with conversation.transaction(conv_dir) as txn:
            for _ in range(batch):
                txn.record("user_message", **EVENT)
        count -= batch


def median_ms(action, samples: int) -> float:
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        action()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000,50000")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    conv_dir = conversation.create(model="openai/bench", workspace=str(home), base_url=None, prompt="go", home=home)

    def one_event() -> None:
        with conversation.transaction(conv_dir) as txn:
            txn.record("user_message", **EVENT)

    print(f"{'events in history':>18}{'history MB':>12}{'record 1 event (ms)':>22}{'load_state (ms)':>18}")
    have = 2
    for size in (int(s) for s in args.sizes.split(",")):
        grow(conv_dir, max(0, size - have))
        have = max(have, size)
        record = median_ms(one_event, args.samples)
        have += args.samples
        load = median_ms(lambda: conversation.load_state(conv_dir), args.samples)
        megabytes = (conv_dir / conversation.EVENTS_FILE).stat().st_size / 1e6
        print(f"{size:>18}{megabytes:>12.1f}{record:>22.2f}{load:>18.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
