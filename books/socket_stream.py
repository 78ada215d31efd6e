"""Coinbase and Kraken books in the ingest process: their snapshot comes on the socket, so a resync re-subscribes
(docs/BOOKS.md, "Ingest (Coinbase and Kraken)").

Each has a WebSocket connection of its own, like Binance's depth (:mod:`books.stream`): Coinbase's Advanced Trade
``level2`` (and ``heartbeats``) checked by the connection's ``sequence_num`` (:class:`~books.coinbase.
CoinbaseL2Connection`); Kraken's v2 ``book`` at ``BOOK_KRAKEN_DEPTH`` checked by its CRC32 (:class:`~books.kraken.
KrakenBookSync`). A break clears the book and publishes it not valid; the feed then sends ``unsubscribe`` and
``subscribe`` for the broken books on the same connection (the frame handler returns them to the client), and the
fresh snapshot syncs them again. A new connection (a drop) breaks every valid book, and its subscriptions bring the
snapshots.

On ``market.books`` they publish what Binance's feed does, in the same schema (:mod:`books.stream`): a delta per
applied update, a snapshot at each sync, every ``BOOK_SNAPSHOT_EVERY_S`` and at each break (``valid`` false). The ids
differ: Coinbase's ``first_id`` = ``last_id`` = the ``sequence_num`` of the message (per connection: it restarts
at 0 with each connection); Kraken's are null (its v2 book has no sequence). Kraken's delta adds a zero-quantity
level for each level the update pushed out of the subscribed depth (Kraken sends no delete for those), so a
consumer applies every exchange's deltas the same way.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import partial
from typing import Any, ClassVar

import orjson
from django.conf import settings

from books.book import BookDataError, Level
from books.coinbase import CoinbaseL2Connection, parse_updates
from books.kraken import KrakenBookSync, parse_book_levels
from books.messages import SCHEMA_VERSION, snapshot_messages
from books.sync import BAD_DATA, DISCONNECTED, BookSync
from ingest.exchanges.base import ConnectionPlan, rfc3339_ms, to_text
from ingest.metrics import IngestMetrics
from ingest.producer import TradeProducer
from ingest.records import DeadLetter

logger = logging.getLogger(__name__)

#: the least time between two re-subscriptions of one book (its snapshot may still be on the way)
RESUBSCRIBE_S = 5.0


def _rows(levels: list[Level]) -> list[list[str]]:
    return [[format(price, "f"), format(qty, "f")] for price, qty in levels]


class SocketBookFeed:
    """What the Coinbase and Kraken feeds share: the messages, the resync requests, the metrics. Thread-safe
    (the connection thread, and the runner's tick)."""

    exchange: ClassVar[str] = ""

    def __init__(
        self,
        symbols: list[str],
        producer: TradeProducer,
        metrics: IngestMetrics,
        *,
        snapshot_every_s: float,
        snapshot_part_levels: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Books for ``symbols`` (the exchange's own spelling: ``BTC-USD``, ``BTC/USD``)."""
        self.symbols = list(symbols)
        self.producer = producer
        self.metrics = metrics
        self.snapshot_every_s = snapshot_every_s
        # A big book's snapshot goes out in parts, each under Kafka's message limit (books.messages).
        self.snapshot_part_levels = (
            settings.BOOK_SNAPSHOT_PART_LEVELS if snapshot_part_levels is None else snapshot_part_levels
        )
        self.clock = clock
        self.source = f"ingest:{self.exchange}:books"
        self._keys = {symbol: f"{self.exchange}:{symbol}".encode() for symbol in symbols}
        self._published_at: dict[str, float] = {}
        self._asked_at: dict[str, float] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------- hooks
    def syncs(self) -> dict[str, BookSync]:
        """Every book's sync machine, by symbol."""
        raise NotImplementedError

    def resubscribe(self, symbols: list[str]) -> list[str]:
        """The messages that bring ``symbols`` a new snapshot on this connection."""
        raise NotImplementedError

    def handle(self, raw: bytes | str, received_at: int) -> None:
        """Decode, check and apply one frame (under the lock)."""
        raise NotImplementedError

    def last_id(self, symbol: str) -> int | None:
        """The id a snapshot of ``symbol`` carries as ``first_id`` and ``last_id``."""
        return None

    def on_connection(self) -> None:
        """A new connection: every book needs its snapshot again."""
        for sync in self.syncs().values():
            sync.on_gap(DISCONNECTED, "a new connection")

    # ------------------------------------------------------------------------------------------- frames
    def __call__(self, raw: bytes | str, received_at: int) -> bool | list[str]:
        """Handle one frame; the messages to send back (re-subscriptions), if any."""
        self.metrics.messages_received += 1
        with self._lock:
            self.handle(raw, received_at)
            return self._resyncs()

    def connection_started(self) -> None:
        """The client (re)connected: its subscriptions ask every book's snapshot."""
        with self._lock:
            self._track(lambda: self.on_connection(), int(time.time() * 1000))
            now = self.clock()
            for symbol in self.symbols:
                self._asked_at[symbol] = now

    def _resyncs(self) -> list[str]:
        now = self.clock()
        due = [
            symbol
            for symbol, sync in self.syncs().items()
            if sync.snapshot_needed and now - self._asked_at.get(symbol, -RESUBSCRIBE_S) >= RESUBSCRIBE_S
        ]
        if not due:
            return []
        for symbol in due:
            self._asked_at[symbol] = now
        self.metrics.book_snapshot_requests += len(due)
        logger.info("book resubscribing", extra={"exchange": self.exchange, "symbols": due})
        return self.resubscribe(due)

    def _track(
        self, apply: Callable[[], Any], received_at: int, delta: Callable[[str], bytes | None] | None = None
    ) -> Any:
        """Run ``apply`` and publish what it did to each book: a break (an invalid snapshot, a resync counted), a
        sync (a valid snapshot), an applied update (``delta(symbol)``'s message) and the periodic snapshots."""
        before = {symbol: (sync.valid, sync.resyncs, sync.syncs) for symbol, sync in self.syncs().items()}
        result = apply()
        for symbol, sync in self.syncs().items():
            was_valid, resyncs, syncs = before[symbol]
            messages: list[bytes] = []
            if sync.resyncs != resyncs:
                self.metrics.book_resyncs += sync.resyncs - resyncs
                messages.extend(self._snapshot_messages(sync, received_at))  # valid: false, no levels
            elif was_valid and sync.valid and delta is not None:
                message = delta(symbol)
                if message is not None:
                    messages.append(message)
            if sync.syncs != syncs and sync.valid:
                self.metrics.book_syncs += sync.syncs - syncs
                logger.info("book in sync", extra={"exchange": self.exchange, "symbol": symbol})
                messages.extend(self._snapshot_messages(sync, received_at))
            elif sync.valid and self.clock() - self._published_at.get(symbol, 0.0) >= self.snapshot_every_s:
                messages.extend(self._snapshot_messages(sync, received_at))
            self._publish(symbol, messages, received_at)
        return result

    def tick(self, received_at: int | None = None) -> None:
        """Every half second (the runner's loop): the due periodic snapshots of valid books, quiet ones too."""
        at = int(time.time() * 1000) if received_at is None else received_at
        with self._lock:
            now = self.clock()
            for symbol, sync in self.syncs().items():
                if sync.valid and now - self._published_at.get(symbol, 0.0) >= self.snapshot_every_s:
                    self._publish(symbol, self._snapshot_messages(sync, at), at)

    # ------------------------------------------------------------------------------------------- messages
    def _delta_message(
        self,
        symbol: str,
        ids: int | None,
        event_ms: int | None,
        bids: list[list[str]],
        asks: list[list[str]],
        received_at: int,
    ) -> bytes:
        self.metrics.book_deltas += 1
        return orjson.dumps(
            {
                "v": SCHEMA_VERSION,
                "exchange": self.exchange,
                "symbol": symbol,
                "kind": "delta",
                "first_id": ids,
                "last_id": ids,
                "t": event_ms,
                "valid": True,
                "bids": bids,
                "asks": asks,
                "received_at": received_at,
            }
        )

    def _snapshot_messages(self, sync: BookSync, received_at: int) -> list[bytes]:
        self.metrics.book_snapshots += 1
        self._published_at[sync.symbol] = self.clock()
        book = sync.book
        levels = book.as_lists(max(len(book.bids), len(book.asks))) if sync.valid else {"bids": [], "asks": []}
        last = self.last_id(sync.symbol) if sync.valid else None
        return snapshot_messages(
            self.exchange, sync.symbol, last, book.event_ms, sync.valid, levels, received_at, self.snapshot_part_levels
        )

    def _publish(self, symbol: str, messages: list[bytes], received_at: int) -> None:
        if messages:
            self.producer.publish_books(self._keys[symbol], messages, received_at)

    def dead_letter(self, reason: str, raw: bytes | str, received_at: int) -> None:
        """Count a refused book frame and send it to the dead-letter topic, as trades' are."""
        self.metrics.malformed += 1
        self.metrics.book_malformed += 1
        self.producer.dead_letter(
            DeadLetter(source=self.source, reason=reason, raw=to_text(raw), received_at=received_at)
        )


class CoinbaseBookFeed(SocketBookFeed):
    """The Advanced Trade ``level2`` connection: every message goes through the connection's ``sequence_num``
    check (heartbeats and subscription replies count too)."""

    exchange = "coinbase"

    def __init__(self, symbols: list[str], producer: TradeProducer, metrics: IngestMetrics, **kwargs: Any) -> None:
        """Books for the ``symbols`` (product ids)."""
        super().__init__(symbols, producer, metrics, **kwargs)
        self.connection = CoinbaseL2Connection(symbols)
        self._sequence: dict[str, int] = {}

    def syncs(self) -> dict[str, BookSync]:
        """The connection's books."""
        return self.connection.books  # type: ignore[return-value]

    def last_id(self, symbol: str) -> int | None:
        """The ``sequence_num`` of the last message applied to the book."""
        return self._sequence.get(symbol)

    def on_connection(self) -> None:
        """Sequence numbers restart, and every book needs a snapshot."""
        self.connection.connection_lost()

    def resubscribe(self, symbols: list[str]) -> list[str]:
        """``unsubscribe`` then ``subscribe`` ``level2``: the subscription sends each product a new snapshot."""
        return [
            orjson.dumps({"type": kind, "product_ids": symbols, "channel": "level2"}).decode()
            for kind in ("unsubscribe", "subscribe")
        ]

    def handle(self, raw: bytes | str, received_at: int) -> None:
        """Check the message, dead-letter what is malformed (its product's book breaks: it missed an update),
        and feed the rest to the connection."""
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.dead_letter(f"malformed JSON: {str(exc)[:200]}", raw, received_at)
            return
        if not isinstance(message, dict):
            self.dead_letter("message is not a JSON object", raw, received_at)
            return
        if message.get("type") == "error":
            self.metrics.book_snapshot_errors += 1
            logger.warning("coinbase error reply", extra={"message": str(message.get("message"))[:200]})
            return
        sequence = message.get("sequence_num")
        if isinstance(sequence, bool) or not isinstance(sequence, int):
            self.dead_letter(f"sequence_num must be an integer, got {str(sequence)[:40]!r}", raw, received_at)
            return
        if message.get("channel") != "l2_data":
            self._track(lambda: self.connection.on_message(message), received_at)
            return
        events = message.get("events")
        if not isinstance(events, list):
            self.dead_letter("l2_data: events must be a list", raw, received_at)
            self._track(lambda: self._refused(message, list(self.syncs()), "events must be a list"), received_at)
            return
        good: list[dict[str, Any]] = []
        parsed: dict[int, tuple[list[Level], list[Level], int | None]] = {}
        broken: list[str] = []
        for event in events:
            product = event.get("product_id") if isinstance(event, dict) else None
            if product not in self.connection.books:
                self.dead_letter(f"l2_data event of a product not subscribed: {str(product)[:40]!r}", raw, received_at)
                continue
            try:
                if event.get("type") not in ("snapshot", "update"):
                    raise BookDataError(f"unknown event type {str(event.get('type'))[:20]!r}")
                parsed[id(event)] = parse_updates(event.get("updates"))
            except BookDataError as exc:
                self.dead_letter(f"l2_data {product}: {exc}", raw, received_at)
                broken.append(str(product))
                continue
            good.append(event)
        self.metrics.book_events += len(good)
        applied = {str(event["product_id"]): event for event in good}

        def apply() -> None:
            self._refused({**message, "events": good}, broken, "a malformed l2_data event")
            for product in applied:
                self._sequence[product] = sequence

        def delta(product: str) -> bytes | None:
            event = applied.get(product)
            if event is None or event["type"] != "update":
                return None
            bids, asks, event_ms = parsed[id(event)]
            return self._delta_message(product, sequence, event_ms, _rows(bids), _rows(asks), received_at)

        self._track(apply, received_at, delta)

    def _refused(self, message: dict[str, Any], products: list[str], why: str) -> None:
        # The message still counts in the sequence; the books whose event was refused missed an update.
        self.connection.on_message(message)
        for product in products:
            self.connection.books[product].on_gap(BAD_DATA, why)


def kraken_loads(raw: bytes | str) -> Any:
    """A Kraken frame decoded with its decimals exact (the checksum needs their digits)."""
    return json.loads(raw, parse_float=Decimal)


class KrakenBookFeed(SocketBookFeed):
    """The v2 ``book`` connection at one subscribed depth, each book checked by its CRC32."""

    exchange = "kraken"

    def __init__(
        self, symbols: list[str], producer: TradeProducer, metrics: IngestMetrics, *, depth: int, **kwargs: Any
    ) -> None:
        """Books for the ``symbols`` (``BTC/USD``) at ``depth``."""
        super().__init__(symbols, producer, metrics, **kwargs)
        self.depth = depth
        self.books = {symbol: KrakenBookSync(symbol, depth) for symbol in symbols}

    def syncs(self) -> dict[str, BookSync]:
        """The books."""
        return self.books  # type: ignore[return-value]

    def subscribe(self, symbols: list[str], method: str = "subscribe") -> str:
        """A ``book`` (un)subscription of ``symbols`` at the feed's depth."""
        params: dict[str, Any] = {"channel": "book", "symbol": symbols, "depth": self.depth}
        if method == "subscribe":
            params["snapshot"] = True
        return orjson.dumps({"method": method, "params": params}).decode()

    def resubscribe(self, symbols: list[str]) -> list[str]:
        """``unsubscribe`` then ``subscribe``: Kraken refuses a second subscription of a subscribed symbol."""
        return [self.subscribe(symbols, "unsubscribe"), self.subscribe(symbols)]

    def handle(self, raw: bytes | str, received_at: int) -> None:
        """Check each ``data`` entry, dead-letter what is malformed (its book breaks), apply the rest."""
        try:
            message = kraken_loads(raw)
        except (ValueError, RecursionError) as exc:
            self.dead_letter(f"malformed JSON: {str(exc)[:200]}", raw, received_at)
            return
        if not isinstance(message, dict):
            self.dead_letter("message is not a JSON object", raw, received_at)
            return
        if message.get("success") is False:
            self.metrics.book_snapshot_errors += 1
            logger.warning("kraken refused a request", extra={"error": str(message.get("error"))[:200]})
            return
        if message.get("channel") != "book":
            return  # status, heartbeat, acknowledgements
        kind = message.get("type")
        data = message.get("data")
        if kind not in ("snapshot", "update") or not isinstance(data, list):
            self.dead_letter(f"book: unknown type {str(kind)[:20]!r} or data not a list", raw, received_at)
            return
        for item in data:
            symbol = item.get("symbol") if isinstance(item, dict) else None
            sync = self.books.get(symbol) if isinstance(symbol, str) else None
            if sync is None:
                self.dead_letter(f"book entry of a symbol not subscribed: {str(symbol)[:40]!r}", raw, received_at)
                continue
            try:
                bids = parse_book_levels(item.get("bids", []), "bids")
                asks = parse_book_levels(item.get("asks", []), "asks")
                checksum = item.get("checksum")
                if isinstance(checksum, bool) or not isinstance(checksum, int):
                    raise BookDataError(f"checksum must be an integer, got {str(checksum)[:20]!r}")
                stamp = item.get("timestamp")
                event_ms = rfc3339_ms(stamp) if stamp is not None else None
            except (BookDataError, ValueError) as exc:
                self.dead_letter(f"book {symbol}: {exc}", raw, received_at)
                self._track(partial(sync.on_gap, BAD_DATA, f"refused: {exc}"), received_at)
                continue
            self.metrics.book_events += 1
            self._apply(sync, str(kind), item, bids, asks, event_ms, received_at)

    def _apply(
        self,
        sync: KrakenBookSync,
        kind: str,
        item: Mapping[str, Any],
        bids: list[Level],
        asks: list[Level],
        event_ms: int | None,
        received_at: int,
    ) -> None:
        held = (set(sync.book.bids.levels), set(sync.book.asks.levels))

        def delta(symbol: str) -> bytes | None:
            if symbol != sync.symbol or kind != "update":
                return None
            sides = []
            for levels, before, now in ((bids, held[0], sync.book.bids.levels), (asks, held[1], sync.book.asks.levels)):
                rows = _rows(levels)
                sent = {price for price, _ in levels}
                # Levels the update pushed out of the depth: Kraken sends no delete, the delta says it.
                rows += [[format(price, "f"), "0"] for price in sorted(before - sent) if price not in now]
                # And those it sent, only to be pushed out at once.
                rows += [[format(price, "f"), "0"] for price, qty in levels if qty and price not in now]
                sides.append(rows)
            return self._delta_message(symbol, None, event_ms, sides[0], sides[1], received_at)

        self._track(lambda: sync.on_data(kind, item), received_at, delta)


def coinbase_plan(ws_url: str, products: list[str]) -> ConnectionPlan:
    """The books connection: ``level2`` for the products, and ``heartbeats`` (a quiet book still gets frames)."""
    return ConnectionPlan(
        url=ws_url,
        symbols=tuple(products),
        subscribe=tuple(
            orjson.dumps({"type": "subscribe", "product_ids": products, "channel": channel}).decode()
            for channel in ("level2", "heartbeats")
        ),
    )


def kraken_plan(ws_url: str, feed: KrakenBookFeed) -> ConnectionPlan:
    """The books connection: ``book`` at the feed's depth, with its snapshot."""
    return ConnectionPlan(url=ws_url, symbols=tuple(feed.symbols), subscribe=(feed.subscribe(feed.symbols),))
