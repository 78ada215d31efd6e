"""The simulator server: one asyncio ``websockets`` server speaking one exchange's protocol (and REST), fed by
one :class:`~simulator.feed.Feed`. :class:`BackgroundSimulator` runs it in a thread for tests."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TypeVar

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from ingest.exchanges import get
from ingest.records import TradeRecord
from simulator.base import Protocol
from simulator.config import SimulatorConfig
from simulator.depth import DepthTape
from simulator.feed import Feed, PaceKey, TradeStore, for_exchange, trade_time

logger = logging.getLogger(__name__)
T = TypeVar("T")


def protocol_class(exchange: str) -> type[Protocol]:
    """The protocol of ``exchange``: ``PROTOCOL`` of ``simulator/<name>.py``, found by the registered name.

    An exchange the registry does not hold raises :class:`ingest.exchanges.UnknownExchangeError` (naming the
    known ones); a registered one without its module here raises :class:`ModuleNotFoundError`.
    """
    name = get(exchange).name
    protocol = importlib.import_module(f"simulator.{name}").PROTOCOL
    if not (isinstance(protocol, type) and issubclass(protocol, Protocol)):
        raise TypeError(f"simulator.{name}.PROTOCOL is not a simulator.base.Protocol")
    return protocol


class Simulator:
    """A simulated exchange: config, market feed, REST store and the protocol serving connections."""

    def __init__(
        self,
        config: SimulatorConfig,
        source: Iterable[TradeRecord],
        pace: PaceKey = trade_time,
        depth: DepthTape | None = None,
    ) -> None:
        """A market replaying ``source`` (and ``depth``'s recorded book events, Binance only) as ``config`` says."""
        self.config = config
        self.depth = depth
        self.protocol = protocol_class(config.exchange)(self)
        self.store = TradeStore(config.store_size)
        self.feed = Feed(
            for_exchange(source, config.exchange),
            self.protocol.encode,
            speed=config.speed,
            max_rate=config.max_rate,
            gap_every=config.gap_every,
            start_delay=config.start_delay,
            chunk_size=config.chunk_size,
            store=self.store,
            symbols=config.symbols,
            pace=pace,
            depth=depth,
        )
        self.connections = 0
        self.active = 0
        self.malformed = 0  # malformed frames sent (--malformed-rate), over all connections
        self._numbers = itertools.count(1)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        return self.protocol.http(connection, request)

    async def _handle(self, connection: ServerConnection) -> None:
        number = next(self._numbers)
        self.connections += 1
        self.active += 1
        logger.info(
            "simulator: connection opened",
            extra={"connection": number, "path": connection.request.path if connection.request else None},
        )
        try:
            await self.protocol.make_session(connection, number).run()
        finally:
            self.active -= 1
            logger.info("simulator: connection closed", extra={"connection": number})

    async def serve(self, stop: asyncio.Event, ready: Callable[[str, int], None] | None = None) -> None:
        """Listen until ``stop`` is set; ``ready(host, port)`` is called once the socket is bound."""
        config = self.config
        async with serve(
            self._handle,
            config.host,
            config.port,
            process_request=self._process_request,
            compression=None,
            max_queue=16,
            max_size=1 << 20,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            # On shutdown, do not wait the default 10 s for clients that never answer the close frame.
            close_timeout=1.0,
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            feed_task = asyncio.create_task(self.feed.run(), name="simulator-feed")
            if ready is not None:
                ready(config.host, port)
            try:
                await stop.wait()
            finally:
                feed_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed_task
                server.close()
                await server.wait_closed()


class BackgroundSimulator:
    """A simulator on an ephemeral port in a background thread (tests and benchmarks).

    Usage::

    with BackgroundSimulator(SimulatorConfig(speed=0), records) as sim:
        websocket.create_connection(sim.url + "/ws/btcusdt@trade")
    """

    def __init__(
        self,
        config: SimulatorConfig,
        source: Iterable[TradeRecord],
        pace: PaceKey = trade_time,
        depth: DepthTape | None = None,
    ) -> None:
        """A simulator of ``config`` over ``source`` (and ``depth``), not started yet."""
        self.simulator = Simulator(config, source, pace, depth)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="simulator", daemon=True)

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>``."""
        return f"ws://{self.simulator.config.host}:{self.port}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>`` (the exchange's REST)."""
        return f"http://{self.simulator.config.host}:{self.port}"

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.simulator.serve(self._stop, self._on_ready)

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            self._error = exc
            self._ready.set()

    def _on_ready(self, host: str, port: int) -> None:
        self.port = port
        self._ready.set()

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` in the simulator's loop thread and return its result (to read state safely)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._async(function), self._loop).result(10)

    @staticmethod
    async def _async(function: Callable[[], T]) -> T:
        return function()

    def start(self) -> BackgroundSimulator:
        """Start and wait until the port is bound."""
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the simulator did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def __enter__(self) -> BackgroundSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
