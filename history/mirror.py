"""A local mirror of data.binance.vision: serves a folder in the archive's layout over HTTP.

``GET``/``HEAD`` of ``/data/spot/...`` return the file under the root (404 when absent), with single-range
``Range: bytes=a-[b]`` support (206, or 416 past the end) so resumed downloads can be exercised offline. Nothing
outside the root is ever served.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_CHUNK = 1 << 16


class MirrorHandler(BaseHTTPRequestHandler):
    """Serves files under ``server.root``."""

    server: MirrorServer
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:
        """The headers of a GET, without the body."""
        self._serve(body=False)

    def do_GET(self) -> None:
        """The file (a ``Range`` gets 206); 404 for anything but a file under the root, 416 for a bad range."""
        self._serve(body=True)

    def _resolve(self) -> Path | None:
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        root = self.server.root
        target = (root / rel).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None
        return target

    def _serve(self, body: bool) -> None:
        self.server.served.append((urlsplit(self.path).path, self.headers.get("Range")))
        target = self._resolve()
        if target is None:
            self._empty(HTTPStatus.NOT_FOUND)
            return
        size = target.stat().st_size
        start, end = 0, size - 1
        status = HTTPStatus.OK
        header = self.headers.get("Range")
        if header:
            m = _RANGE.match(header.strip())
            if m is None:
                self._empty(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, size)
                return
            start = int(m[1])
            end = min(int(m[2]), size - 1) if m[2] else size - 1
            if start >= size or end < start:
                self._empty(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, size)
                return
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if target.name.endswith(".CHECKSUM") else "application/zip")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        with target.open("rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def _empty(self, status: HTTPStatus, size: int | None = None) -> None:
        self.send_response(status)
        if size is not None:
            self.send_header("Content-Range", f"bytes */{size}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """To the ``history.mirror`` logger at DEBUG, not stderr."""
        logger.debug("mirror: " + format, *args)


class MirrorServer(ThreadingHTTPServer):
    """The HTTP server, knowing its root folder."""

    daemon_threads = True

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = root.resolve()
        # (path, Range header) of the latest requests, for tests and debugging.
        self.served: deque[tuple[str, str | None]] = deque(maxlen=1000)
        if not self.root.is_dir():
            raise FileNotFoundError(f"mirror root {root} is not a folder")
        super().__init__((host, port), MirrorHandler)

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket (the real port when 0 was asked for)."""
        host, port = self.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"


def start_in_thread(root: Path, host: str = "127.0.0.1", port: int = 0) -> MirrorServer:
    """A mirror serving from a daemon thread (tests, ``import_history --mirror``); ``shutdown()`` stops it."""
    server = MirrorServer(root, host, port)
    threading.Thread(target=server.serve_forever, name="archive-mirror", daemon=True).start()
    return server
