"""Binance books in the ingest process: ``<symbol>@depth@100ms`` -> :class:`~books.binance.BinanceBookSync` per
symbol (REST snapshots from ``/api/v3/depth``) -> the ``market.books`` topic (docs/BOOKS.md, "Ingest").

The depth streams have a WebSocket connection of their own: the trade connection and its frame handler are the
same whether books are on or off, so a trade frame never pays for books. A reconnect needs no resync by itself:
Binance's update ids run per symbol across connections, so the first event of the new connection either chains
(nothing was lost) or breaks the book (then it resyncs).

What goes on the topic, keyed ``exchange:symbol`` (schema ``v`` 1, decimals as the exchange's strings):

- ``kind: "delta"``: each depth event applied while the book is in sync, with its ``first_id`` (``U``) and
  ``last_id`` (``u``), ``t`` (its event time, epoch ms) and its levels as sent (quantity 0 deletes the level);
- ``kind: "snapshot"``: the whole book after each sync, every ``BOOK_SNAPSHOT_EVERY_S`` while valid, and on a
  break (then ``valid`` false and no levels: a consumer drops its book until the next valid snapshot).
  ``first_id`` = ``last_id`` = the last update id the book holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from django.conf import settings

from books.binance import BinanceBookSync, Levels
from books.book import BookDataError, parse_levels
from books.messages import SCHEMA_VERSION, snapshot_messages
from ingest import channels
from ingest.backfill import BackfillError
from ingest.exchanges.base import ConnectionPlan, to_text
from ingest.exchanges.binance.adapter import combined_plans
from ingest.exchanges.binance.backfill import BinanceBackfiller
from ingest.metrics import IngestMetrics
from ingest.producer import TradeProducer
from ingest.records import DeadLetter

logger = logging.getLogger(__name__)

EXCHANGE = "binance"
#: the least time between two snapshot requests of one symbol (a stale snapshot or a REST failure asks again)
SNAPSHOT_RETRY_S = 1.0

#: fetch(symbol, limit) -> the decoded ``/api/v3/depth`` answer
SnapshotFetch = Callable[[str, int], Any]


def depth_plans(ws_url: str, symbols: list[str]) -> list[ConnectionPlan]:
    """Combined-stream URLs of ``<symbol>@depth@100ms`` (lower-case subscription spelling), 1024 a connection."""
    return combined_plans(ws_url, symbols, "depth@100ms")


def rest_fetch(rest_url: str) -> SnapshotFetch:
    """``GET /api/v3/depth`` through the Binance REST client (its retries, 429 handling and weight reading)."""
    client = BinanceBackfiller(rest_url, attempts=3)

    def fetch(symbol: str, limit: int) -> Any:
        body, _headers = client.get_json("/api/v3/depth", {"symbol": symbol, "limit": limit}, "depth snapshot")
        return body

    return fetch


def _check_event(data: Mapping[str, Any]) -> Levels:
    """The event's bids and asks, parsed (handed to the sync machine, which then does not parse them again).

    Raises:
        BookDataError: a ``depthUpdate`` the sync machine must not see (it is dead-lettered).
    """
    for key in ("U", "u", "E"):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BookDataError(f"{key} must be an integer, got {str(value)[:40]!r}")
    if data["U"] > data["u"]:
        raise BookDataError(f"U {data['U']} is after u {data['u']}")
    bids, asks = data.get("b"), data.get("a")
    for key, rows in (("b", bids), ("a", asks)):
        if not isinstance(rows, list):
            raise BookDataError(f"{key} must be a list of [price, qty]")
    return parse_levels(bids, "b"), parse_levels(asks, "a")  # type: ignore[arg-type]


class BinanceBookFeed:
    """The frame handler of the depth connection(s): keeps one :class:`BinanceBookSync` per symbol in sync and
    publishes its deltas and snapshots. Thread-safe (the connection thread, and the runner's tick)."""

    def __init__(
        self,
        symbols: list[str],
        producer: TradeProducer,
        metrics: IngestMetrics,
        fetch: SnapshotFetch,
        *,
        snapshot_limit: int,
        snapshot_every_s: float,
        snapshot_part_levels: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Books for ``symbols`` (record spelling, ``BTCUSDT``), snapshots fetched with ``fetch``."""
        self.producer = producer
        self.metrics = metrics
        self.fetch = fetch
        self.snapshot_limit = snapshot_limit
        self.snapshot_every_s = snapshot_every_s
        # A big book's snapshot goes out in parts, each under Kafka's message limit (books.messages).
        self.snapshot_part_levels = (
            settings.BOOK_SNAPSHOT_PART_LEVELS if snapshot_part_levels is None else snapshot_part_levels
        )
        self.clock = clock
        self.syncs = {symbol: BinanceBookSync(symbol) for symbol in symbols}
        self.source = f"ingest:{EXCHANGE}:books"
        self._keys = {symbol: f"{EXCHANGE}:{symbol}".encode() for symbol in symbols}
        self._fetched_at: dict[str, float] = {}
        self._published_at: dict[str, float] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------- frames
    def __call__(self, raw: bytes | str, received_at: int) -> bool:
        """Handle one frame of the depth connection; True when Binance announced a shutdown (reconnect now)."""
        metrics = self.metrics
        metrics.messages_received += 1
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.dead_letter(f"malformed JSON: {str(exc)[:200]}", raw, received_at)
            return False
        if not isinstance(message, dict):
            self.dead_letter("message is not a JSON object", raw, received_at)
            return False
        data = message.get("data") if "stream" in message else message
        if not isinstance(data, dict):
            self.dead_letter("event is not a JSON object", raw, received_at)
            return False
        kind = data.get("e")
        if kind != "depthUpdate":
            if kind == "serverShutdown":
                logger.warning("exchange announced a shutdown", extra={"exchange": EXCHANGE, "channel": "books"})
                return True
            if "result" in data or "error" in data:  # a control reply: nothing to publish
                return False
            self.dead_letter(f"unknown event {str(kind)[:40]!r}", raw, received_at)
            return False
        sync = self.syncs.get(data.get("s"))  # type: ignore[arg-type]
        if sync is None:
            self.dead_letter(f"depthUpdate of a symbol not subscribed: {str(data.get('s'))[:40]!r}", raw, received_at)
            return False
        try:
            levels = _check_event(data)
        except BookDataError as exc:
            # Not applied: the next event then does not chain, and the book resyncs (never silently wrong).
            self.dead_letter(f"depthUpdate: {exc}", raw, received_at)
            return False
        with self._lock:
            self._on_event(sync, data, levels, received_at)
        return False

    def _on_event(self, sync: BinanceBookSync, data: dict[str, Any], levels: Levels, received_at: int) -> None:
        metrics = self.metrics
        metrics.book_events += 1
        was_valid, resyncs, before = sync.valid, sync.resyncs, sync.last_update_id
        sync.on_delta(data, levels)
        messages: list[bytes] = []
        if sync.resyncs != resyncs:
            metrics.book_resyncs += sync.resyncs - resyncs
            messages.extend(self._snapshot_messages(sync, received_at))  # valid: false, no levels
        elif was_valid and sync.valid and sync.last_update_id != before:
            # Applied (an event the snapshot already holds, u <= lastUpdateId, is dropped and not published).
            messages.append(self._delta_message(sync.symbol, data, received_at))
        if sync.snapshot_needed:
            messages.extend(self._resync(sync, received_at))
        elif sync.valid and self.clock() - self._published_at.get(sync.symbol, 0.0) >= self.snapshot_every_s:
            messages.extend(self._snapshot_messages(sync, received_at))
        self._publish(sync.symbol, messages, received_at)

    def _resync(self, sync: BinanceBookSync, received_at: int) -> list[bytes]:
        """Fetch a snapshot for a book that waits for one (at most once per :data:`SNAPSHOT_RETRY_S`); the
        messages to publish when it syncs."""
        now = self.clock()
        if now - self._fetched_at.get(sync.symbol, -SNAPSHOT_RETRY_S) < SNAPSHOT_RETRY_S:
            return []  # the events are buffered meanwhile; a later one asks again
        self._fetched_at[sync.symbol] = now
        self.metrics.book_snapshot_requests += 1
        try:
            snapshot = self.fetch(sync.symbol, self.snapshot_limit)
        except BackfillError as exc:
            self.metrics.book_snapshot_errors += 1
            logger.warning("book snapshot not fetched", extra={"symbol": sync.symbol, "error": str(exc)})
            return []
        if not isinstance(snapshot, dict):
            self.metrics.book_snapshot_errors += 1
            logger.warning("book snapshot is not a JSON object", extra={"symbol": sync.symbol})
            return []
        sync.on_snapshot(snapshot)
        if not sync.valid:
            reason = sync.last_break.reason if sync.last_break else None
            logger.warning("book snapshot did not sync", extra={"symbol": sync.symbol, "reason": reason})
            return []
        self.metrics.book_syncs += 1
        logger.info("book in sync", extra={"symbol": sync.symbol, "last_update_id": sync.last_update_id})
        return self._snapshot_messages(sync, received_at)

    def tick(self, received_at: int | None = None) -> None:
        """Every half second (the runner's loop): publish the due periodic snapshots of valid books (a quiet book's
        too), and fetch the snapshot a book with buffered events still waits for (its retry was not due when its
        last event came, and no event may follow)."""
        at = int(time.time() * 1000) if received_at is None else received_at
        with self._lock:
            now = self.clock()
            for symbol, sync in self.syncs.items():
                if sync.snapshot_needed and sync.buffered:
                    self._publish(symbol, self._resync(sync, at), at)
                elif sync.valid and now - self._published_at.get(symbol, 0.0) >= self.snapshot_every_s:
                    self._publish(symbol, self._snapshot_messages(sync, at), at)

    # ------------------------------------------------------------------------------------------- messages
    def _delta_message(self, symbol: str, data: dict[str, Any], received_at: int) -> bytes:
        self.metrics.book_deltas += 1
        return orjson.dumps(
            {
                "v": SCHEMA_VERSION,
                "exchange": EXCHANGE,
                "symbol": symbol,
                "kind": "delta",
                "first_id": data["U"],
                "last_id": data["u"],
                "t": data["E"],
                "valid": True,
                "bids": data["b"],
                "asks": data["a"],
                "received_at": received_at,
            }
        )

    def _snapshot_messages(self, sync: BinanceBookSync, received_at: int) -> list[bytes]:
        self.metrics.book_snapshots += 1
        self._published_at[sync.symbol] = self.clock()
        book = sync.book
        levels = book.as_lists(max(len(book.bids), len(book.asks))) if sync.valid else {"bids": [], "asks": []}
        last = sync.last_update_id if sync.last_update_id >= 0 else None
        return snapshot_messages(
            EXCHANGE, sync.symbol, last, book.event_ms, sync.valid, levels, received_at, self.snapshot_part_levels
        )

    def _publish(self, symbol: str, messages: list[bytes], received_at: int) -> None:
        if messages:
            self.producer.publish_books(self._keys[symbol], messages, received_at)

    def dead_letter(self, reason: str, raw: bytes | str, received_at: int) -> None:
        """Count a refused depth frame and send it to the dead-letter topic, as trades' are."""
        self.metrics.malformed += 1
        self.metrics.book_malformed += 1
        self.producer.dead_letter(
            DeadLetter(source=self.source, reason=reason, raw=to_text(raw), received_at=received_at)
        )


#: the exchanges with a books channel (their descriptors say ``Capabilities(books=True)``)
BOOK_EXCHANGES = (EXCHANGE, "coinbase", "kraken")


def book_channel(context: channels.ChannelContext) -> channels.ChannelRun:
    """The ``books`` channel of ``manage.py ingest``: Binance's depth connection (REST snapshots), or Coinbase's and
    Kraken's book connection (snapshots on the socket, :mod:`books.socket_stream`)."""
    if context.exchange in ("coinbase", "kraken"):
        return socket_channel(context)
    if context.exchange != EXCHANGE or context.rest_url is None:
        raise ValueError(f"{context.exchange} has no books channel (only {', '.join(BOOK_EXCHANGES)} have one)")
    feed = BinanceBookFeed(
        list(context.record_symbols),
        context.producer,
        context.metrics,
        rest_fetch(context.rest_url),
        snapshot_limit=settings.BOOK_SNAPSHOT_LIMIT,
        snapshot_every_s=settings.BOOK_SNAPSHOT_EVERY_S,
    )
    return channels.ChannelRun([(plan, feed) for plan in depth_plans(context.ws_url, list(context.symbols))], feed.tick)


def socket_channel(context: channels.ChannelContext) -> channels.ChannelRun:
    """Coinbase's ``level2`` or Kraken's ``book`` connection, on a connection of its own."""
    from books.socket_stream import CoinbaseBookFeed, KrakenBookFeed, coinbase_plan, kraken_plan

    symbols = list(context.record_symbols)
    if context.exchange == "coinbase":
        coinbase = CoinbaseBookFeed(
            symbols, context.producer, context.metrics, snapshot_every_s=settings.BOOK_SNAPSHOT_EVERY_S
        )
        return channels.ChannelRun([(coinbase_plan(context.ws_url, symbols), coinbase)], coinbase.tick)
    kraken = KrakenBookFeed(
        symbols,
        context.producer,
        context.metrics,
        depth=settings.BOOK_KRAKEN_DEPTH,
        snapshot_every_s=settings.BOOK_SNAPSHOT_EVERY_S,
    )
    return channels.ChannelRun([(kraken_plan(context.ws_url, kraken), kraken)], kraken.tick)


def register_channel() -> None:
    """Register :func:`book_channel` as ingest's ``books`` channel (from the app's ``ready()``)."""
    channels.register("books", book_channel)
