"""What the stand-ins share: an HTTP server on a thread, the messages it kept, and injected faults.

Every stand-in also answers (outside the real API's paths):

- ``GET /_messages``: the messages accepted so far, as a JSON list (what ``make demo`` points at);
- ``DELETE /_messages``: forget them;
- ``POST /_faults`` with ``{"next": [429, 500, "slow"]}``: the next requests get these answers instead (a status
  code in the real API's error format, or ``"slow"``: the answer trickles out one byte a second).

Accepted messages are also appended to a JSON lines file when one is given.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Store:
    """The messages a stand-in accepted, in memory and (optionally) in a JSON lines file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []

    def add(self, message: dict[str, Any]) -> None:
        """Keep one accepted message."""
        with self._lock:
            self._messages.append(message)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(message, sort_keys=True) + "\n")

    def all(self) -> list[dict[str, Any]]:
        """Every accepted message, oldest first."""
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        """Forget the messages (the file too)."""
        with self._lock:
            self._messages.clear()
            if self.path is not None:
                self.path.write_text("")


class Faults:
    """Answers to give the next requests instead of the normal one (a status code or ``"slow"``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: list[int | str] = []

    def push(self, items: list[int | str]) -> None:
        """Queue answers for the next requests."""
        with self._lock:
            self._next.extend(items)

    def pop(self) -> int | str | None:
        """The answer the next request gets (None: the normal one)."""
        with self._lock:
            return self._next.pop(0) if self._next else None


class StandinServer(ThreadingHTTPServer):
    """A threaded HTTP server carrying its stand-in's store, faults and configuration."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        store: Store,
        config: dict[str, Any],
    ) -> None:
        super().__init__(address, handler)
        self.store = store
        self.faults = Faults()
        self.config = config

    @property
    def url(self) -> str:
        """The base URL clients use."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}" if isinstance(host, str) else f"http://{host.decode()}:{port}"

    def start(self) -> threading.Thread:
        """Serve on a daemon thread (tests, the command's several stand-ins)."""
        thread = threading.Thread(target=self.serve_forever, name=type(self).__name__, daemon=True)
        thread.start()
        return thread


class StandinHandler(BaseHTTPRequestHandler):
    """The control paths and the response helpers; subclasses implement the API's ``POST``."""

    server: StandinServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stand-ins' record is the message store."""

    def body(self) -> bytes:
        """The request body (Content-Length, capped at 1 MB)."""
        length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """Answer with JSON."""
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)
        self.close_connection = True

    def trickle(self, status: int = 200) -> None:
        """A slow-loris answer: one byte a second until the client hangs up (at most two minutes)."""
        raw = f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}".encode()
        self.close_connection = True
        for i in range(min(len(raw), 120)):
            try:
                self.wfile.write(raw[i : i + 1])
                self.wfile.flush()
            except OSError:
                return
            time.sleep(1.0)

    def do_GET(self) -> None:
        """``/_messages``: the accepted messages."""
        if self.path.split("?")[0] == "/_messages":
            self.reply(200, self.server.store.all())
        else:
            self.not_found()

    def do_DELETE(self) -> None:
        """``/_messages``: forget them."""
        if self.path.split("?")[0] == "/_messages":
            self.server.store.clear()
            self.reply(200, {"cleared": True})
        else:
            self.not_found()

    def do_POST(self) -> None:
        """``/_faults``, or the API (:meth:`api`) after any injected fault."""
        if self.path.split("?")[0] == "/_faults":
            try:
                items = json.loads(self.body() or b"{}").get("next", [])
            except (ValueError, AttributeError):
                items = None
            if not isinstance(items, list) or not all(isinstance(i, int) or i == "slow" for i in items):
                self.reply(400, {"error": 'expected {"next": [<status code> or "slow", ...]}'})
                return
            self.server.faults.push(items)
            self.reply(200, {"queued": len(items)})
            return
        fault = self.server.faults.pop()
        if fault == "slow":
            self.body()
            self.trickle()
        elif isinstance(fault, int):
            self.body()
            self.fault(fault)
        else:
            self.api()

    def not_found(self) -> None:
        """The API's 404."""
        self.reply(404, {"error": "not found"})

    def api(self) -> None:
        """The real API's POST (subclasses)."""
        self.not_found()

    def fault(self, status: int) -> None:
        """An injected error in the API's own format (subclasses)."""
        self.reply(status, {"error": status})


def serve(handler: type[StandinHandler], host: str, port: int, store: Store, config: dict[str, Any]) -> StandinServer:
    """A started stand-in (port 0: any free one; its ``url`` says which)."""
    server = StandinServer((host, port), handler, store, config)
    server.start()
    return server
