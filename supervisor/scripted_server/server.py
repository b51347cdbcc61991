"""The public handle on a running scripted server: start_server() and ScriptedServer."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from supervisor.scripted_server.handler import POLL_SECONDS, ScriptedHTTPServer
from supervisor.scripted_server.recorder import Recorder
from supervisor.scripted_server.script import validate_script


class ScriptedServer:
    """A scripted server running on a background thread of this process.

    Use start_server() to make one; stop it with stop() or a `with` block.
    """

    def __init__(self, httpd: ScriptedHTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self._stop_lock = threading.Lock()
        self._stopped = False

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The port the server listens on (the real one when 0 was asked for)."""
        return int(self._httpd.server_address[1])

    @property
    def base(self) -> str:
        """The server root, e.g. http://127.0.0.1:PORT."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base URL that clients append /chat/completions or /messages to."""
        return f"{self.base}/v1"

    def events(self) -> list[dict[str, Any]]:
        """Return a copy of every event recorded so far, oldest first."""
        return self._httpd.recorder.snapshot()

    def rejections(self) -> list[list[str]]:
        """The problems of each request the strict checker refused, oldest first."""
        return [event["problems"] for event in self.events() if event["event"] == "rejected"]

    def requests(self) -> list[Any]:
        """Return the bodies of the completion requests received so far, oldest first."""
        return [event["body"] for event in self.events() if event["event"] == "request"]

    def wait_for(self, event: str, n: int | None = None, timeout: float = 5.0) -> dict[str, Any] | None:
        """Wait until an event of that name (and step index n, if given) is recorded.

        Returns the first such event, or None if none came within timeout seconds.
        """
        return self._httpd.recorder.wait_for(event, n, timeout)

    def stop(self) -> None:
        """Stop serving and end every open connection, hanging ones included.

        Returns within a fraction of a second; calling it again does nothing.
        """
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        # Set first, so that handlers woken below know it was not the client leaving.
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        self._thread.join(timeout=2.0)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_server(
    script: dict[str, Any],
    host: str = "127.0.0.1",
    port: int = 0,
    log_path: str | None = None,
    strict: bool = True,
) -> ScriptedServer:
    """Validate `script` and start serving it on a background thread.

    Port 0 picks a free port; read the real one from the result's `url`. When
    log_path is given, events are also appended to that file as JSON lines.
    With strict (the default), every completion request is first checked the way
    the real API checks it, and a violation is answered with that API's 400.
    Raises ScriptError for a bad script and OSError when it cannot listen.
    """
    checked = validate_script(script)
    httpd = ScriptedHTTPServer((host, port), checked, Recorder(log_path), strict)
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": POLL_SECONDS},
        name=f"scripted-server-{httpd.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return ScriptedServer(httpd, thread)
