"""What every simulated exchange protocol shares: the session skeleton, frame sending with fault injection,
HTTP JSON responses and time formatting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ingest.records import TradeRecord
from simulator.faults import Faults, FrameFields
from simulator.feed import Subscriber

if TYPE_CHECKING:
    from simulator.server import Simulator

logger = logging.getLogger(__name__)

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 429: "Too Many Requests"}
_second_cache: dict[int, str] = {}


def rfc3339(millis: int, *, nanos: bool = False) -> str:
    """Epoch ms -> ``2024-08-08T23:54:15.342000Z`` (micro- or nanosecond digits, like the exchanges)."""
    seconds, ms = divmod(millis, 1000)
    prefix = _second_cache.get(seconds)
    if prefix is None:
        if len(_second_cache) > 4096:
            _second_cache.clear()
        prefix = _second_cache[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{prefix}.{ms:03d}{'000000' if nanos else '000'}Z"


def text_frames(frames: list[bytes]) -> bytes:
    """Unmasked, unfragmented server text frames (RFC 6455 5.2), serialised back to back for one write."""
    parts: list[bytes] = []
    append = parts.append
    for frame in frames:
        size = len(frame)
        if size < 126:
            append(_HEADER_SMALL[size])
        elif size < 65536:
            append(b"\x81\x7e" + size.to_bytes(2, "big"))
        else:
            append(b"\x81\x7f" + size.to_bytes(8, "big"))
        append(frame)
    return b"".join(parts)


_HEADER_SMALL = [bytes((0x81, size)) for size in range(126)]


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def json_response(status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """An HTTP response with a JSON body (REST endpoints and refused WebSocket paths), plus ``headers``."""
    payload = orjson.dumps(body)
    all_headers = Headers(
        [
            ("Content-Type", "application/json;charset=UTF-8"),
            ("Content-Length", str(len(payload))),
            ("Connection", "close"),
            *headers,
        ]
    )
    return Response(status, _REASONS.get(status, "Error"), all_headers, payload)


def is_upgrade(request: Request) -> bool:
    """Whether ``request`` opens a WebSocket (else it is a plain HTTP request: REST)."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


class TokenBucket:
    """A REST rate limit: ``burst`` requests at once, refilled at ``rate`` per second (rate 0: no limit)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self.tokens = self.burst
        self.at = clock()
        self.refused = 0

    def allow(self, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens for one request (at most the burst, so a heavy request can pass a full bucket);
        False (and counted) when there are not enough: answer "too many requests"."""
        if not self.rate:
            return True
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        cost = min(cost, self.burst)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        self.refused += 1
        return False


class Session:
    """One client connection: a receive loop for control messages and a sender draining the feed.

    Subclasses implement :meth:`on_message` and :meth:`frames` (the protocol), and may add periodic tasks.
    """

    fields: ClassVar[FrameFields]
    # Coinbase batches updates over an interval; the others send each chunk as it comes.
    batches: ClassVar[bool] = False

    def __init__(self, simulator: Simulator, connection: ServerConnection, number: int) -> None:
        self.simulator = simulator
        self.config = simulator.config
        self.connection = connection
        self.number = number
        self.subscriber = Subscriber(simulator.feed)
        self.faults = Faults(
            self.fields,
            drop_every=self.config.drop_every,
            malformed_rate=self.config.malformed_rate,
            seed=self.config.seed,
            connection=number,
        )
        self.dropped = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- protocol hooks ------------------------------------------------------------------------------------
    async def on_open(self) -> None:
        """Called once the handshake is done (before any message is read)."""

    async def on_message(self, message: str | bytes) -> None:
        """Handle one control message from the client."""
        raise NotImplementedError

    def frames(self, chunk: list[tuple[TradeRecord, Any]]) -> list[bytes]:
        """The frames carrying ``chunk`` (already filtered to this connection's symbols)."""
        raise NotImplementedError

    # -- machinery -----------------------------------------------------------------------------------------
    def spawn(self, coro: Any) -> None:
        """Run a periodic task for the lifetime of the session."""
        self._tasks.append(asyncio.create_task(coro))

    async def send_json(self, payload: Any) -> None:
        """Send a control reply (not counted by fault injection)."""
        await self.connection.send(orjson.dumps(payload), text=True)

    async def send_control(self, frames: list[bytes]) -> None:
        """Protocol frames outside the trade flow, written at once (not counted by fault injection)."""
        async with self.connection.send_context():
            self.connection.transport.write(text_frames(frames))

    async def send_frames(self, frames: list[bytes]) -> None:
        """Send data frames in one write, applying the fault plan; a planned drop closes the socket abruptly."""
        drop = False
        if self.faults.active:
            before = self.faults.malformed
            frames, drop = self.faults.apply(frames)
            self.simulator.malformed += self.faults.malformed - before
        connection = self.connection
        # One write and one drain for the whole batch: per-frame send() calls (one syscall each) would cost
        # most of the time. send_context() checks the connection is open and drains on exit; writing
        # finished text frames straight to the transport is safe there (no fragmented message is in flight).
        async with connection.send_context():
            connection.transport.write(text_frames(frames))
        if drop:
            await self.drop()

    async def drop(self) -> None:
        """Close the TCP connection without a close frame, after the frames already sent have left."""
        self.dropped = True
        transport = self.connection.transport
        for _ in range(1000):  # at most ~5 s for the socket buffer to empty
            if transport.is_closing() or not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.005)
        logger.info("simulator: dropping a connection", extra={"connection": self.number, "sent": self.faults.sent})
        transport.abort()

    async def _sender(self) -> None:
        get = self.subscriber.get
        try:
            if self.batches and self.config.speed > 0 and self.config.batch_interval > 0:
                await self._batched_sender()
            while not self.dropped:
                chunk = await get()
                if chunk:
                    await self.send_frames(self.frames(chunk))
        except ConnectionClosed:
            pass

    async def _batched_sender(self) -> None:
        # Everything that arrived within batch_interval of the first pending trade goes out together.
        loop = asyncio.get_running_loop()
        pending: list[tuple[TradeRecord, Any]] = []
        deadline: float | None = None
        while not self.dropped:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await self.subscriber.get()
            except TimeoutError:
                chunk = []
            if chunk:
                pending.extend(chunk)
                if deadline is None:
                    deadline = loop.time() + self.config.batch_interval
            if deadline is not None and loop.time() >= deadline:
                await self.send_frames(self.frames(pending))
                pending, deadline = [], None

    async def run(self) -> None:
        """Serve the connection until it closes (or its lifetime ends)."""
        self.spawn(self._sender())
        try:
            await self.on_open()
            async with asyncio.timeout(self.config.lifetime or None):
                async for message in self.connection:
                    await self.on_message(message)
        except TimeoutError:
            logger.info("simulator: connection lifetime reached", extra={"connection": self.number})
            await self.connection.close(1000, "connection lifetime reached")
        except ConnectionClosed:
            pass
        finally:
            self.subscriber.close()
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task


class Protocol:
    """An exchange's protocol: how trades are encoded once for all connections, and its sessions and paths."""

    name: ClassVar[str]
    session: ClassVar[type[Session]]
    #: the public REST limit (requests per second, burst) when the config does not set ``rest_rate``
    rest_limit: ClassVar[tuple[float, float]] = (0.0, 0.0)

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        rate, burst = self.rest_limit
        configured = simulator.config.rest_rate
        if configured is not None:
            rate, burst = configured, configured
        self.rest_bucket = TokenBucket(rate, burst)

    @staticmethod
    def encode(record: TradeRecord) -> Any:
        """The trade's pre-encoded form (shared by every connection); a plain function, called per trade."""
        raise NotImplementedError

    def http(self, connection: ServerConnection, request: Request) -> Response | None:
        """An HTTP answer for ``request`` (REST, or refusing a path), or None to go on with the WebSocket."""
        return None

    def make_session(self, connection: ServerConnection, number: int) -> Session:
        """The session object serving ``connection``."""
        return self.session(self.simulator, connection, number)
