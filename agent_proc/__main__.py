"""Entry point of the child: `python -m agent_proc run ID`.

Started by the supervisor with the conversation already created on disk; the API key
arrives in the environment only. The exit code is the run's outcome (see `run`).
"""

from __future__ import annotations

import os
import sys

USAGE = "usage: python -m agent_proc run CONVERSATION_ID [--keep-partial]"


def entry(argv: list[str]) -> int:
    keep_partial = "--keep-partial" in argv
    argv = [a for a in argv if a != "--keep-partial"]
    if len(argv) != 2 or argv[0] != "run":
        print(USAGE, file=sys.stderr)
        return 2
    from agent_proc.conversation import ConversationError
    from agent_proc.run import main

    try:
        return main(argv[1], keep_partial=keep_partial)
    except ConversationError as error:
        print(f"agent_proc: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    code = entry(sys.argv[1:])
    # Everything the run wrote is fsynced already; skipping interpreter teardown
    # makes an interrupted child exit tens of milliseconds sooner.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
