"""Coinbase Advanced Trade ``level2`` books (messages on channel ``l2_data``), checked by ``sequence_num``.

The bundled recording (``data/coinbase-ws/COINBASE.jsonl.zst``) is of the Advanced Trade WebSocket
(``advanced-trade-ws.coinbase.com``): it subscribes ``{"type": "subscribe", "channel": "level2", ...}`` and receives
``{"channel": "l2_data", "sequence_num", "events": [{"type": "snapshot"|"update", "product_id", "updates":
[{"side": "bid"|"offer", "event_time", "price_level", "new_quantity"}]}]}``; not the Coinbase Exchange ``level2``
channel (``l2update`` messages, which carry no sequence number).

``sequence_num`` counts every message of the *connection*, whatever its channel or product (the recording's 1,030
messages across five channels are numbered 0..1029 without a hole). A gap therefore may have lost any product's
update: every book of the connection breaks, and a resubscription brings each one a new snapshot event. Updates
that arrive for a book waiting for its snapshot are dropped (the snapshot will contain them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from books.book import BookDataError, Level, to_decimal
from books.sync import BAD_DATA, DISCONNECTED, SEQUENCE_GAP, BookSync
from ingest.exchanges.base import rfc3339_ms

_SIDES = {"bid": 0, "offer": 1}


def parse_updates(updates: Any) -> tuple[list[Level], list[Level], int | None]:
    """An event's ``updates`` as (bids, asks, event time of the last one in ms); :class:`BookDataError` when
    malformed."""
    if not isinstance(updates, list):
        raise BookDataError("updates must be a list")
    sides: tuple[list[Level], list[Level]] = ([], [])
    for update in updates:
        if not isinstance(update, dict):
            raise BookDataError(f"an update must be an object, got {str(update)[:60]!r}")
        side = _SIDES.get(str(update.get("side")))
        if side is None:
            raise BookDataError(f"side must be bid or offer, got {str(update.get('side'))[:20]!r}")
        price = to_decimal(update.get("price_level"), "price_level")
        if not price:
            raise BookDataError("price_level must be positive")
        sides[side].append((price, to_decimal(update.get("new_quantity"), "new_quantity")))
    event_ms = None
    if updates:
        try:
            event_ms = rfc3339_ms(updates[-1].get("event_time"))
        except ValueError as exc:
            raise BookDataError(f"event_time: {exc}") from None
    return sides[0], sides[1], event_ms


class CoinbaseBookSync(BookSync):
    """One product's book from its ``l2_data`` events; the connection (:class:`CoinbaseL2Connection`) checks the
    sequence."""

    exchange = "coinbase"

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Feed one event of an ``l2_data`` message: a snapshot (re)syncs the book, an update is applied if synced."""
        kind = event.get("type")
        if kind == "update" and self.snapshot_needed:
            return
        try:
            bids, asks, event_ms = parse_updates(event.get("updates"))
        except BookDataError as exc:
            self._break(BAD_DATA, f"{kind}: {exc}")
            return
        if kind == "snapshot":
            self.book.apply_snapshot(bids, asks, event_ms)
            if self._check_crossed():
                self._synced()
        elif kind == "update":
            self.book.apply(bids, asks, event_ms)
            self._check_crossed()
        else:
            self._break(BAD_DATA, f"unknown event type {str(kind)[:20]!r}")


class CoinbaseL2Connection:
    """The ``level2`` books of one Advanced Trade connection and its ``sequence_num``; feed it every message."""

    def __init__(self, products: Iterable[str]) -> None:
        """One book per subscribed product, all waiting for their snapshot."""
        self.books = {product: CoinbaseBookSync(product) for product in products}
        self.last_sequence: int | None = None

    def on_message(self, message: Mapping[str, Any]) -> None:
        """Feed one decoded message of the connection, whatever its channel (they all count in the sequence)."""
        sequence = message.get("sequence_num")
        if isinstance(sequence, int) and not isinstance(sequence, bool):
            last = self.last_sequence
            if last is not None and sequence != last + 1:
                for sync in self.books.values():
                    sync.on_gap(SEQUENCE_GAP, f"sequence_num {sequence} after {last}")
            self.last_sequence = sequence
        if message.get("channel") != "l2_data":
            return
        events = message.get("events")
        for event in events if isinstance(events, list) else ():
            book = self.books.get(str(event.get("product_id"))) if isinstance(event, dict) else None
            if book is not None:
                book.on_event(event)

    def connection_lost(self) -> None:
        """The socket closed: sequence numbers restart with the next one, and every book needs a new snapshot."""
        self.last_sequence = None
        for sync in self.books.values():
            sync.on_gap(DISCONNECTED, "the connection closed")

    def snapshot_needed(self) -> list[str]:
        """The products to (re)subscribe to get a snapshot."""
        return [product for product, sync in self.books.items() if sync.snapshot_needed]
