"""Real local receivers for the delivery tests: an HTTP webhook receiver with selectable misbehaviour, and helpers
to create destinations and deliveries."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request the receiver read completely: its idempotency key, headers and raw body."""

    path: str
    key: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@dataclass
class Behaviour:
    """How the receiver answers: a status, or ``slow`` (one byte every ``interval`` s), or ``hold`` (wait for
    ``release`` before answering). ``plan`` overrides ``mode`` for the next requests, one entry each."""

    mode: str = "ok"
    status: int = 200
    interval: float = 1.0
    plan: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1 that logs every complete request and how each slow answer ended."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.behaviour = Behaviour()
        self.received: list[Received] = []
        self.slow_answers: list[dict[str, int | bool]] = []  # bytes written, and whether the client hung up
        self.on_request: Callable[[Received], None] | None = None
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server_address[1])

    def url(self, path: str = "/hook") -> str:
        """A URL of this receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def keys(self) -> list[str]:
        """The idempotency keys of every complete request, in arrival order."""
        with self.lock:
            return [r.key for r in self.received]

    def stop(self) -> None:
        """Stop listening (the port then refuses connections)."""
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        got = Received(self.path, self.headers.get("X-Idempotency-Key", ""), dict(self.headers.items()), body)
        behaviour = self.server.behaviour
        with self.server.lock:
            mode = behaviour.plan.pop(0) if behaviour.plan else behaviour.mode
            self.server.received.append(got)
        if self.server.on_request is not None:
            self.server.on_request(got)
        self.close_connection = True
        if mode == "slow":
            self._trickle(behaviour.interval)
            return
        if mode == "hold":
            behaviour.release.wait(120)
        status = behaviour.status if mode in {"ok", "hold"} else int(mode)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"{}")

    def _trickle(self, interval: float) -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        written = 0
        hung_up = False
        for i in range(len(answer)):
            try:
                self.wfile.write(answer[i : i + 1])
                self.wfile.flush()
                written += 1
                # A peer that closed shows on the next write; peek to see it sooner.
                self.connection.setblocking(False)
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        hung_up = True
                        break
                except BlockingIOError:
                    pass
                finally:
                    self.connection.setblocking(True)
            except OSError:
                hung_up = True
                break
            time.sleep(interval)
        with self.server.lock:
            self.server.slow_answers.append({"written": written, "of": len(answer), "hung_up": hung_up})


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
