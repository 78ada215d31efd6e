"""One HTTP request under a TOTAL deadline (connect + TLS + send + read), for every channel that speaks HTTP.

A socket timeout alone restarts with every byte received: a receiver that trickles one byte every few seconds keeps
``http.client`` reading forever (the review finding: an alerts worker held up to Celery's 120 s soft limit). Here the
socket's timeout is set to the time left before every connect, send, handshake and ``recv``, and reading stops with
:class:`~notifications.channels.base.DeadlineExceededError` once none is left, however the bytes arrive. The host
name's DNS lookup counts too (:mod:`notifications.resolver`).

Plain ``http.client`` and sockets: no proxy from the environment, no redirect followed, the answer's body capped.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from notifications import resolver
from notifications.channels.base import Deadline, DeadlineExceededError

MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Response:
    """The status, headers (lower-cased names) and at most ``MAX_RESPONSE_BYTES`` of the body."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class _DeadlineReader(io.RawIOBase):
    """The socket as a raw stream whose every ``recv`` waits at most the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        """A read-only stream."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """One ``recv``, bounded by the time left (raises DeadlineExceededError when none is)."""
        self._sock.settimeout(self._deadline.remaining())
        return self._sock.recv_into(buffer)


class _DeadlineSocket:
    """What :class:`http.client.HTTPResponse` needs of a socket: ``makefile`` over :class:`_DeadlineReader`."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str, *args: object, **kwargs: object) -> io.BufferedReader:
        """A buffered reader whose reads keep the deadline."""
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


def request(
    method: str,
    url: str,
    deadline: Deadline,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    address: str = "",
) -> Response:
    """Send one request and read its answer, all before ``deadline``.

    ``address``: connect there instead of resolving the URL's host (the address the SSRF guard checked); the Host
    header, SNI and certificate check still use the host name; without it the host is resolved within the deadline.
    Raises ``OSError`` (``DeadlineExceededError``
    included) or ``http.client.HTTPException``; the caller classifies them.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        return _exchange(method, parts.scheme, host, port, parts, deadline, body, headers or {}, address)
    except DeadlineExceededError:
        raise
    except TimeoutError as exc:
        # Every timeout below is the time that was left: when one fires, the deadline has passed.
        raise DeadlineExceededError("the attempt's deadline passed") from exc


def _connect(host: str, port: int, deadline: Deadline, address: str) -> socket.socket:
    """A connection to ``address``, else to the first of ``host``'s addresses that accepts, all before ``deadline``:
    the name's lookup included (:mod:`notifications.resolver`), which ``socket.create_connection`` would do
    outside any timeout."""
    candidates = [address] if address else resolver.addresses(host, port, deadline)
    refused: OSError | None = None
    for candidate in candidates:
        try:
            return socket.create_connection((candidate, port), timeout=deadline.remaining())
        except TimeoutError:
            raise  # the time left is spent: no other address can be tried
        except OSError as exc:
            refused = exc
    raise refused or OSError(f"{host} resolves to no address")


def _exchange(
    method: str,
    scheme: str,
    host: str,
    port: int,
    parts: SplitResult,
    deadline: Deadline,
    body: bytes,
    headers: dict[str, str],
    address: str,
) -> Response:
    sock = _connect(host, port, deadline, address)
    try:
        if scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
            # One do_handshake() call keeps one overall timeout (CPython counts it from the call's start).
            sock.settimeout(deadline.remaining())
            sock.do_handshake()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = host if parts.port is None else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if parts.port is None else f"[{host}]:{port}"
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}", "Connection: close"]
        for name, value in headers.items():
            if any(c in f"{name}{value}" for c in "\r\n\0"):
                raise http.client.HTTPException(f"line break in header {name!r}")
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # sendall's timeout is the whole call's (Python >= 3.5), not per chunk.
        sock.settimeout(deadline.remaining())
        sock.sendall(head + body)
        response = http.client.HTTPResponse(_DeadlineSocket(sock, deadline), method=method)  # type: ignore[arg-type]
        try:
            response.begin()
            data = response.read(MAX_RESPONSE_BYTES)
        finally:
            response.close()
        return Response(int(response.status), data, {k.lower(): v for k, v in response.getheaders()})
    finally:
        sock.close()
