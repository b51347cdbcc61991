"""Entry point of the child: `python -m agent_proc run ID`.

Started by the supervisor with the conversation already created on disk; the API key
arrives on an inherited pipe, never in the environment (see `api_key`). The exit code
is the run's outcome (see `run`).
"""

from __future__ import annotations

import os
import sys

USAGE = "usage: python -m agent_proc run CONVERSATION_ID [--keep-partial] [--marker=MARKER]"


def entry(argv: list[str]) -> int:
    from agent_proc import api_key

    api_key.keep_memory_private()  # before the key is in our memory
    key = api_key.receive()
    keep_partial = "--keep-partial" in argv
    # --marker= only identifies this process to the supervisor (see processes.identify).
    argv = [a for a in argv if a != "--keep-partial" and not a.startswith("--marker=")]
    if len(argv) != 2 or argv[0] != "run":
        print(USAGE, file=sys.stderr)
        return 2
    from agent_proc.conversation import ConversationError
    from agent_proc.run import main

    try:
        return main(argv[1], keep_partial=keep_partial, key=key)
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
