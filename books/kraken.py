"""Kraken WebSocket v2 ``book`` channel, checked by its CRC32 checksum over the exact decimal strings.

Kraken's documented procedure (docs.kraken.com, "Book checksum (WebSocket v2)"): apply every level of a message
(``"qty": 0`` removes one), truncate each side to the subscribed depth (levels pushed out of scope get no delete),
then compare the message's ``checksum`` with the CRC32 of the top 10 asks (low to high) then the top 10 bids (high to
low), each level written as its price then its quantity with the ``.`` removed and the leading zeros stripped.

The checksum needs the digits exactly as sent, trailing zeros included (``0.10000000``): parse the frames with
``json.loads(frame, parse_float=Decimal)`` (floats are refused). Kraken's v2 book carries no sequence number, so the
checksum is what finds a dropped or reordered update; any mismatch is a break, and resubscribing brings a new
snapshot.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from books.book import BookDataError, L2Book, Level, to_decimal
from books.sync import BAD_DATA, CHECKSUM_MISMATCH, BookSync
from ingest.exchanges.base import rfc3339_ms

#: the depths Kraken's v2 ``book`` subscription accepts
DEPTHS = (10, 25, 100, 500, 1000)
#: how many levels per side the checksum covers, whatever the depth
CHECKSUM_LEVELS = 10


def _digits(value: Decimal) -> str:
    return format(value, "f").replace(".", "").lstrip("0")


def kraken_checksum(book: L2Book) -> int:
    """Kraken's CRC32 of the book's top 10 asks then top 10 bids, as an unsigned 32-bit integer."""
    bids, asks = book.top(CHECKSUM_LEVELS)
    text = "".join(_digits(price) + _digits(qty) for price, qty in asks)
    text += "".join(_digits(price) + _digits(qty) for price, qty in bids)
    return zlib.crc32(text.encode("ascii"))


def parse_book_levels(rows: Any, what: str) -> list[Level]:
    """A ``bids`` or ``asks`` list of ``{"price", "qty"}`` objects; :class:`BookDataError` when malformed."""
    if not isinstance(rows, list):
        raise BookDataError(f"{what} must be a list")
    out = []
    for row in rows:
        if not isinstance(row, dict):
            raise BookDataError(f"{what}: a level must be an object, got {str(row)[:60]!r}")
        price = to_decimal(row.get("price"), f"{what} price")
        if not price:
            raise BookDataError(f"{what}: price must be positive")
        out.append((price, to_decimal(row.get("qty"), f"{what} qty")))
    return out


class KrakenBookSync(BookSync):
    """One Kraken symbol's book from the v2 ``book`` channel at a subscribed ``depth``."""

    exchange = "kraken"

    def __init__(self, symbol: str, depth: int = 10) -> None:
        """A book waiting for its snapshot; ``depth`` is the subscription's (10, 25, 100, 500 or 1000)."""
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {DEPTHS}, got {depth}")
        super().__init__(symbol)
        self.depth = depth

    def on_message(self, message: Mapping[str, Any]) -> None:
        """Feed one ``book`` message; only the ``data`` entries of this book's symbol are used."""
        kind = message.get("type")
        data = message.get("data")
        for item in data if isinstance(data, list) else ():
            if isinstance(item, dict) and item.get("symbol") == self.symbol:
                self.on_data(str(kind), item)

    def on_data(self, kind: str, item: Mapping[str, Any]) -> None:
        """Apply one ``data`` entry of a ``snapshot`` or ``update`` message and check its checksum."""
        if kind == "update" and self.snapshot_needed:
            return  # the snapshot the resubscription brings will contain it
        if kind not in ("snapshot", "update"):
            self._break(BAD_DATA, f"unknown message type {kind[:20]!r}")
            return
        try:
            bids, asks = (
                parse_book_levels(item.get("bids", []), "bids"),
                parse_book_levels(item.get("asks", []), "asks"),
            )
            expected = item.get("checksum")
            if isinstance(expected, bool) or not isinstance(expected, int) or not 0 <= expected < 1 << 32:
                raise BookDataError(f"checksum must be an unsigned 32-bit integer, got {str(expected)[:20]!r}")
            stamp = item.get("timestamp")
            event_ms = rfc3339_ms(stamp) if stamp is not None else None
        except (BookDataError, ValueError) as exc:
            self._break(BAD_DATA, f"{kind}: {exc}")
            return
        book = self.book
        if kind == "snapshot":
            book.apply_snapshot(bids, asks, event_ms)
        else:
            book.apply(bids, asks, event_ms)
        book.bids.truncate(self.depth)
        book.asks.truncate(self.depth)
        computed = kraken_checksum(book)
        if computed != expected:
            self._break(CHECKSUM_MISMATCH, f"{kind}: checksum {computed} != {expected}")
            return
        if self._check_crossed() and kind == "snapshot":
            self._synced()
