"""The supervisor of a detached run: `python -m supervisor.watcher ID [--grace S]`.

`agent run -d` starts this in a session of its own and returns. It starts the child,
enforces the run's limits from outside (`watchdog`), stops the run if it gets SIGINT
or SIGTERM itself, and is there to reap the child. If it is killed, the child gets
SIGINT (see `agent_proc.run.die_with_supervisor`) and pauses: no run goes on unwatched.
It receives the API key on a pipe and hands it on to the child the same way.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from agent_proc import api_key, conversation
from supervisor import attach, control, outcomes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m supervisor.watcher")
    parser.add_argument("conversation")
    parser.add_argument("--grace", type=float, default=2.0)
    parser.add_argument("--token", required=True, help="the start token recorded with `starting`")
    parser.add_argument("--keep-partial", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal is no reason to stop a detached run
    unblock_stop_signals()
    api_key.keep_memory_private()  # before the key is in our memory
    key = api_key.receive()

    conv_dir = conversation.resolve(args.conversation)
    child = control.spawn_child(conv_dir, supervisor_pid=os.getpid(), token=args.token,
                                keep_partial=args.keep_partial, key=key)
    try:
        control.wait_started(conv_dir, child, args.token)
    except control.StoppedBeforeStart as stopped:
        child.wait()
        print(f"[watcher] {stopped}", file=sys.stderr)
        return outcomes.EXIT_PAUSED
    except control.StartFailed as error:
        print(f"[watcher] {error}", file=sys.stderr)
        return outcomes.EXIT_FAILED
    try:
        outcome = attach.supervise(conv_dir, child, grace=args.grace, show=False, offset=0)
    except conversation.ConversationError as error:  # removed (`agent rm -f`) while we watched
        print(f"[watcher] {error}", file=sys.stderr)
        return outcomes.EXIT_FAILED
    return outcomes.exit_code_for(outcome.state)


def unblock_stop_signals() -> None:
    """Engines that launch processes (Ray, for one) may start us with SIGINT blocked;
    blocked, a stop would have to wait for SIGKILL. What starts from here (the child)
    inherits the mask, so it is cleared first."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
