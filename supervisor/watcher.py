"""The supervisor of a detached run: `python -m supervisor.watcher ID [--grace S]`.

`agent run -d` starts this in a session of its own and returns. It starts the child,
enforces the run's limits from outside (`watchdog`), stops the run if it gets SIGINT
or SIGTERM itself, and is there to reap the child. If it is killed, the child gets
SIGINT (see `agent_proc.run.die_with_supervisor`) and pauses: no run goes on unwatched.
It receives the API key on a pipe and hands it on to the child the same way.

With `--backend slurm` it is the main process of a batch job (the job's script
`exec`s it): it first waits for the conversation to name its job and records where
the job started, and SIGUSR1 (Slurm's warning before the job's time limit) stops the
run as `--timeout` does.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from agent_proc import api_key, conversation
from supervisor import attach, backends, control, outcomes, scheduled


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m supervisor.watcher")
    parser.add_argument("conversation")
    parser.add_argument("--grace", type=float, default=2.0)
    parser.add_argument("--token", help="the start token recorded with `starting` (a job's watcher takes its own)")
    parser.add_argument("--keep-partial", action="store_true")
    parser.add_argument("--backend", default=backends.DEFAULT, help="the scheduler whose job this process is")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal is no reason to stop a detached run
    unblock_stop_signals()
    api_key.keep_memory_private()  # before the key is in our memory
    key = api_key.receive()

    conv_dir = conversation.resolve(args.conversation)
    job = None
    token = args.token
    if args.backend != backends.DEFAULT:
        job = backends.get(args.backend).this_job()
        if not job:
            print(f"[watcher] not inside a {args.backend} job", file=sys.stderr)
            return outcomes.EXIT_USAGE
        try:
            token = scheduled.claim(conv_dir, job)
        except scheduled.NotClaimed as why_not:
            print(f"[watcher] {why_not}", file=sys.stderr)
            return outcomes.EXIT_USAGE
        if missing := _missing_key(conv_dir):
            reason = f"on {job.get('node')}: {missing} (keys are not sent through {args.backend})"
            print(f"[watcher] {reason}", file=sys.stderr)
            scheduled.start_failed(conv_dir, reason)
            return outcomes.EXIT_USAGE
    if token is None:
        print("[watcher] --token is needed outside a scheduler's job", file=sys.stderr)
        return outcomes.EXIT_USAGE
    time_up: list[int] = []  # in a job: the scheduler's warning that its time limit is near
    if job:
        signal.signal(signal.SIGUSR1, lambda signum, frame: time_up.append(signum))
    child = control.spawn_child(conv_dir, supervisor_pid=os.getpid(), token=token,
                                keep_partial=args.keep_partial, key=key)
    try:
        control.wait_started(conv_dir, child, token)
    except control.StoppedBeforeStart as stopped:
        child.wait()
        print(f"[watcher] {stopped}", file=sys.stderr)
        return outcomes.EXIT_PAUSED
    except control.StartFailed as error:
        print(f"[watcher] {error}", file=sys.stderr)
        if job:
            scheduled.start_failed(conv_dir, str(error))
        return outcomes.EXIT_FAILED
    except KeyboardInterrupt:  # stopped before the child was under way: it must not run on
        control.abandon_start(conv_dir, child)
        return outcomes.EXIT_PAUSED
    try:
        outcome = attach.supervise(conv_dir, child, grace=args.grace, show=False, offset=0,
                                   time_up=lambda: bool(time_up))
    except conversation.ConversationError as error:  # removed (`agent rm -f`) while we watched
        print(f"[watcher] {error}", file=sys.stderr)
        return outcomes.EXIT_FAILED
    return outcomes.exit_code_for(outcome.state)


def _missing_key(conv_dir: Path) -> str | None:
    """Why the run cannot call its model from here: no API key in this node's
    environment (the submitting command's key is not sent along). None if it can."""
    from agent_proc.providers import parse_model
    from supervisor import settings

    state = conversation.load_state(conv_dir)
    try:
        settings.check_key(settings.ModelSettings(parse_model(state.model), state.base_url or ""))
    except settings.SettingsError as error:
        return str(error)
    return None


def unblock_stop_signals() -> None:
    """Engines that launch processes (Ray, for one) may start us with SIGINT blocked;
    blocked, a stop would have to wait for SIGKILL. What starts from here (the child)
    inherits the mask, so it is cleared first."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
