"""A reconnecting WebSocket client loop (websocket-client), polite about the exchanges' limits.

Reconnects on any drop with exponential backoff and full jitter, keeps connection attempts under 300 per
5 minutes and outgoing control messages under 5 per second, recycles a connection before the exchange's 24-hour
cut-off, and answers pings with pongs echoing the payload (websocket-client does that inside ``recv_data``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable

import websocket

from ingest.exchanges.base import ConnectionPlan
from ingest.websocket_internals import install_reader

logger = logging.getLogger(__name__)

MAX_CONNECTION_AGE = 23.5 * 3600  # Binance disconnects after 24 h
CONNECT_ATTEMPTS = (300, 300.0)  # 300 attempts per 5 minutes
CONTROL_MESSAGES = (4, 1.0)  # under Binance's 5 incoming messages per second
IDLE_TIMEOUT = 90.0  # no frame (not even a ping or heartbeat) for this long: the link is dead

_CONTROL = (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG)

#: on_frame(raw, received_at_ms) -> True when the connection should be recycled now; or messages to send on it now
#: (a books feed re-subscribing to get a new snapshot); False or an empty list for nothing
FrameHandler = Callable[[bytes, int], bool | list[str]]


class ReadAhead:
    """Socket reads of up to 64 KiB, handed out in the small pieces websocket-client asks for.

    websocket-client reads each frame with 3-4 ``recv()`` calls of exactly the bytes it needs (header, length,
    payload); at tens of thousands of frames a second those syscalls cost more than the parsing. Reading ahead
    turns them into one syscall per many frames. ``raw`` keeps websocket-client's error handling (timeouts,
    closed connections, SSL).
    """

    __slots__ = ("_buffer", "_pos", "raw", "size")

    def __init__(self, raw: Callable[[int], bytes], size: int = 65536) -> None:
        self.raw = raw
        self.size = size
        self._buffer = b""
        self._pos = 0

    def __call__(self, wanted: int) -> bytes:
        """At most ``wanted`` bytes (at least one); reads the socket only when the buffer is empty."""
        buffer, pos = self._buffer, self._pos
        if pos >= len(buffer):
            buffer = self._buffer = self.raw(self.size)
            pos = 0
        end = pos + wanted
        self._pos = end
        return buffer[pos:end]


class Backoff:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        """The next wait; each call doubles the ceiling up to ``cap``."""
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        """A healthy connection starts the sequence over."""
        self.attempt = 0


class RateLimiter:
    """At most ``limit`` events in any ``period`` seconds (sliding window); shareable between threads."""

    def __init__(self, limit: int, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.period = period
        self.clock = clock
        self._events: deque[float] = deque()
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Seconds to wait before the next event is allowed (0 when it may happen now)."""
        with self._lock:
            now = self.clock()
            while self._events and now - self._events[0] >= self.period:
                self._events.popleft()
            if len(self._events) < self.limit:
                return 0.0
            return self.period - (now - self._events[0])

    def record(self) -> None:
        """An event happened now."""
        with self._lock:
            self._events.append(self.clock())


def connection_attempts_limiter() -> RateLimiter:
    """Binance allows 300 connection attempts per 5 minutes per IP: one limiter for all of a process's clients."""
    return RateLimiter(*CONNECT_ATTEMPTS)


class WsClient:
    """Runs one :class:`ConnectionPlan` until ``stop`` is set, handing every data frame to ``on_frame``."""

    def __init__(
        self,
        plan: ConnectionPlan,
        on_frame: FrameHandler,
        stop: threading.Event,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[str], None] | None = None,
        max_age: float = MAX_CONNECTION_AGE,
        idle_timeout: float = IDLE_TIMEOUT,
        connect_timeout: float = 10.0,
        poll_interval: float = 0.5,
        backoff: Backoff | None = None,
        attempts: RateLimiter | None = None,
    ) -> None:
        self.plan = plan
        self.on_frame = on_frame
        self.stop = stop
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.max_age = max_age
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.poll_interval = poll_interval
        self.backoff = backoff or Backoff()
        self.attempts = attempts or connection_attempts_limiter()
        self.control = RateLimiter(*CONTROL_MESSAGES)
        self.connections = 0
        self.pings = 0

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopped."""
        return self.stop.wait(seconds) if seconds > 0 else self.stop.is_set()

    def _connect(self) -> websocket.WebSocket:
        if self._wait(self.attempts.delay()):
            raise InterruptedError
        self.attempts.record()
        ws = websocket.create_connection(
            self.plan.url,
            timeout=self.connect_timeout,
            skip_utf8_validation=True,  # orjson validates; pure-Python validation costs ~75% of recv time
            enable_multithread=False,
            sslopt={"cert_reqs": ssl.CERT_REQUIRED},
        )
        # websocket-client has no read-ahead of its own; its frame reader takes any recv-like callable.
        install_reader(ws, ReadAhead)
        for message in self.plan.subscribe:
            if self._wait(self.control.delay()):
                ws.close()
                raise InterruptedError
            self.control.record()
            ws.send(message)
        ws.settimeout(self.poll_interval)
        return ws

    def run(self) -> None:
        """Connect, receive, reconnect; returns when ``stop`` is set."""
        while not self.stop.is_set():
            try:
                ws = self._connect()
            except InterruptedError:
                return
            except (websocket.WebSocketException, OSError) as exc:
                delay = self.backoff.next_delay()
                logger.warning(
                    "websocket connect failed", extra={"url": self.plan.url, "error": str(exc), "retry_in_s": delay}
                )
                self._wait(delay)
                continue
            self.connections += 1
            logger.info("websocket connected", extra={"url": self.plan.url, "connection": self.connections})
            if self.on_connect is not None:
                self.on_connect()
            reason = self._receive(ws)
            with contextlib.suppress(websocket.WebSocketException, OSError):  # already gone
                ws.close(timeout=1)
            if self.stop.is_set():
                return
            if self.on_disconnect is not None:
                self.on_disconnect(reason)
            delay = 0.0 if reason in ("max age", "server shutdown") else self.backoff.next_delay()
            logger.warning(
                "websocket disconnected", extra={"url": self.plan.url, "reason": reason, "retry_in_s": delay}
            )
            self._wait(delay)

    def _send(self, ws: websocket.WebSocket, messages: list[str] | bool) -> None:
        """Send a frame handler's messages, within the control-message rate (its wait is short: 4 a second)."""
        for message in messages if isinstance(messages, list) else ():
            self._wait(self.control.delay())
            self.control.record()
            ws.send(message)

    def _receive(self, ws: websocket.WebSocket) -> str:
        """Receive until the connection ends; returns why it ended."""
        opened = last_frame = last_keepalive = time.monotonic()
        recv_data, on_frame, stop = ws.recv_data, self.on_frame, self.stop
        healthy = False
        while not stop.is_set():
            try:
                opcode, data = recv_data(True)
            except websocket.WebSocketTimeoutException:
                now = time.monotonic()
                if now - last_frame > self.idle_timeout:
                    return "idle timeout"
                keepalive = self.plan.keepalive
                if keepalive is not None and now - max(last_frame, last_keepalive) > self.plan.keepalive_s:
                    # An application-level ping (OKX closes a connection quiet for 30 s); its answer is a frame.
                    last_keepalive = now
                    try:
                        ws.send(keepalive)
                    except (websocket.WebSocketException, OSError) as exc:
                        return f"connection lost: {exc or type(exc).__name__}"
                if now - opened > self.max_age:
                    return "max age"
                continue
            except (websocket.WebSocketException, OSError) as exc:
                return f"connection lost: {exc or type(exc).__name__}"
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return "closed by server"
            last_frame = time.monotonic()
            if opcode in _CONTROL:  # already answered (a ping's pong echoes its payload); proves the link lives
                self.pings += opcode == websocket.ABNF.OPCODE_PING
            else:
                if not healthy:
                    healthy = True
                    self.backoff.reset()
                answer = on_frame(data, time.time_ns() // 1_000_000)
                if answer:
                    if answer is True:
                        return "server shutdown"
                    try:
                        self._send(ws, answer)
                    except (websocket.WebSocketException, OSError) as exc:
                        return f"connection lost: {exc or type(exc).__name__}"
            if last_frame - opened > self.max_age:
                return "max age"
        return "stopped"
