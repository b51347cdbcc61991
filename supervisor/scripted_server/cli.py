"""`python -m supervisor.scripted_server`: serve a script file in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from supervisor.scripted_server.script import ScriptError, load_script
from supervisor.scripted_server.server import start_server


def _write_atomically(path: str, text: str) -> None:
    # Whoever polls for the file must never see it half-written.
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """Serve a script file in the foreground until SIGTERM or SIGINT; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m supervisor.scripted_server",
        description="Serve scripted OpenAI / Anthropic API responses on a local port.",
    )
    parser.add_argument("--script", required=True, help="JSON script file")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--log", help="append recorded events to this JSON-lines file")
    parser.add_argument("--ready-file", help="write the base URL here once listening")
    parser.add_argument("--lenient", action="store_true",
                        help="answer requests a strict API would refuse instead of a 400")
    args = parser.parse_args(argv)

    try:
        script = load_script(args.script)
    except ScriptError as exc:
        print(f"scripted_server: {exc}", file=sys.stderr)
        return 2

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        server = start_server(script, host=args.host, port=args.port, log_path=args.log,
                              strict=not args.lenient)
    except OSError as exc:
        print(f"scripted_server: cannot start: {exc}", file=sys.stderr)
        return 1
    with server:
        print(server.url, flush=True)
        if args.ready_file:
            try:
                _write_atomically(args.ready_file, server.url)
            except OSError as exc:
                print(f"scripted_server: cannot write ready file: {exc}", file=sys.stderr)
                return 1
        stop_requested.wait()
    return 0

