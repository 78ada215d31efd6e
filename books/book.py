"""An L2 (price-level) order book with exact decimal prices and quantities, and its 1 s metrics.

Each side is a dict ``price -> qty`` (both :class:`~decimal.Decimal`) plus a list of its prices kept sorted with
:mod:`bisect`. Why this shape (docs/BOOKS.md, "The data structure"):

- A quantity change at an existing price, by far the most frequent update, is one dict store: O(1).
- Inserting or deleting a price is a binary search plus one ``memmove`` of the list's pointers, both in C: O(n),
  over the few thousand pointers a side holds, where a pure-Python tree would interpret each O(log n) step (not
  raced here; ``benchmarks/books.py`` measures this one). No dependency: ``sortedcontainers`` is only a transitive
  dev dependency here.
- Best price, top N and the price bands of the metrics are slices of the sorted list: no sorting at read time.
- :class:`~decimal.Decimal` keeps the exchange's exact digits, trailing zeros included (``Decimal("0.10000000")``
  formats back to ``"0.10000000"``), which Kraken's checksum needs; floats would not, and they would also make two
  prices that differ in the 9th decimal compare wrongly.

A quantity of zero deletes the level (every exchange here sends absolute quantities, zero meaning "gone"); deleting a
price that is not in the book is a no-op, as Binance documents it may happen.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

#: a price level as the book returns it: (price, qty)
Level = tuple[Decimal, Decimal]

#: the two price bands the 1 s metrics report depth in: 10 basis points and 1 % of the mid price
BAND_10BPS = Decimal("0.001")
BAND_1PCT = Decimal("0.01")
_TWO = Decimal(2)


class BookDataError(ValueError):
    """A price or quantity that is not a finite decimal of the right sign (the frame is bad input)."""


def to_decimal(value: Any, what: str) -> Decimal:
    """``value`` (a decimal string, a :class:`Decimal` or an int) as a finite :class:`Decimal`.

    Floats are refused: the exact digits the exchange sent are gone once a JSON number became a float (parse such
    frames with ``parse_float=Decimal``).

    Raises:
        BookDataError: not a decimal, not finite, or negative.
    """
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise BookDataError(f"{what} is not a decimal: {str(value)[:40]!r}") from None
    else:
        raise BookDataError(f"{what} must be a decimal string, got {type(value).__name__}")
    if not number.is_finite() or number < 0:
        raise BookDataError(f"{what} must be finite and not negative: {str(value)[:40]!r}")
    return number


def parse_levels(rows: Iterable[Any], what: str) -> list[Level]:
    """``[[price, qty], ...]`` (Binance's layout) as levels; a price must be positive.

    Raises:
        BookDataError: a row that is not a pair of decimals.
    """
    out: list[Level] = []
    append = out.append
    for row in rows:
        # The common row, two decimal strings, checked inline: parsing is most of a depth event's cost, and a call
        # and two error texts built per row cost as much as the two Decimals. Anything else takes _checked_level.
        if type(row) is list and len(row) == 2:
            price_text, qty_text = row
            if type(price_text) is str and type(qty_text) is str:
                try:
                    price, qty = Decimal(price_text), Decimal(qty_text)
                except InvalidOperation:
                    pass
                else:
                    if price.is_finite() and qty.is_finite() and price > 0 and qty >= 0:
                        append((price, qty))
                        continue
        append(_checked_level(row, what))
    return out


def _checked_level(row: Any, what: str) -> Level:
    """One level checked step by step, raising :class:`BookDataError` with the reason (:func:`parse_levels`)."""
    if not isinstance(row, list | tuple) or len(row) < 2:
        raise BookDataError(f"{what}: a level must be [price, qty], got {str(row)[:60]!r}")
    price = to_decimal(row[0], f"{what} price")
    if not price:
        raise BookDataError(f"{what}: price must be positive, got {row[0]!r}")
    return price, to_decimal(row[1], f"{what} qty")


class BookSide:
    """One side of a book: ``price -> qty`` and the prices in ascending order.

    ``bids`` want the highest price first, ``asks`` the lowest: the list is ascending for both, and
    ``descending`` says from which end "best" is read.
    """

    __slots__ = ("descending", "levels", "prices")

    def __init__(self, descending: bool) -> None:
        """An empty side; ``descending`` for bids (best = highest)."""
        self.descending = descending
        self.levels: dict[Decimal, Decimal] = {}
        self.prices: list[Decimal] = []

    def __len__(self) -> int:
        """How many price levels the side holds."""
        return len(self.prices)

    def set(self, price: Decimal, qty: Decimal) -> None:
        """Set the quantity at ``price``; zero deletes the level (a missing one is no error)."""
        levels = self.levels
        if qty:
            if price not in levels:
                insort(self.prices, price)
            levels[price] = qty
        elif price in levels:
            del levels[price]
            prices = self.prices
            del prices[bisect_left(prices, price)]

    def clear(self) -> None:
        """Remove every level."""
        self.levels.clear()
        self.prices.clear()

    def best(self) -> Level | None:
        """The best level, or None when the side is empty."""
        if not self.prices:
            return None
        price = self.prices[-1] if self.descending else self.prices[0]
        return price, self.levels[price]

    def top(self, n: int) -> list[Level]:
        """The ``n`` best levels, best first."""
        levels = self.levels
        if self.descending:
            chosen: Iterable[Decimal] = reversed(self.prices[-n:]) if n > 0 else ()
        else:
            chosen = self.prices[:n]
        return [(price, levels[price]) for price in chosen]

    def truncate(self, depth: int) -> None:
        """Keep only the ``depth`` best levels (Kraken: levels that fall out of the subscribed depth get no delete)."""
        excess = len(self.prices) - depth
        if excess <= 0:
            return
        prices = self.prices
        if self.descending:
            dropped, self.prices = prices[:excess], prices[excess:]
        else:
            dropped, self.prices = prices[depth:], prices[:depth]
        for price in dropped:
            del self.levels[price]

    def depth_to(self, limit: Decimal) -> Decimal:
        """The summed quantity of the levels at ``limit`` or better (bids: price >= limit; asks: price <= limit)."""
        prices, levels = self.prices, self.levels
        chosen = prices[bisect_left(prices, limit) :] if self.descending else prices[: bisect_right(prices, limit)]
        return sum((levels[price] for price in chosen), Decimal(0))


@dataclass(frozen=True, slots=True)
class BookMetrics:
    """The 1 s metrics of a book (docs/BOOKS.md, "Metrics"); depths are in base-asset quantity.

    ``imbalance`` is ``(bid depth - ask depth) / (bid depth + ask depth)`` within 10 bps of the mid, in [-1, 1]
    (positive: more to buy than to sell near the touch).
    """

    best_bid: Decimal
    best_ask: Decimal
    spread: Decimal
    mid: Decimal
    bid_depth_10bps: Decimal
    ask_depth_10bps: Decimal
    bid_depth_1pct: Decimal
    ask_depth_1pct: Decimal
    imbalance: Decimal


class L2Book:
    """A price-level book: two :class:`BookSide`, exact decimals, and the event time of the last update applied.

    The book only stores what it is told: whether it is in sync with the exchange is the sync state machines'
    business (:mod:`books.sync`), which own a book each.
    """

    __slots__ = ("asks", "bids", "event_ms")

    def __init__(self) -> None:
        """An empty book."""
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)
        #: the exchange event time (epoch ms) of the last snapshot or update applied, None before the first
        self.event_ms: int | None = None

    def clear(self) -> None:
        """Remove every level of both sides."""
        self.bids.clear()
        self.asks.clear()
        self.event_ms = None

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], event_ms: int | None = None) -> None:
        """Replace the whole book with these levels (zero quantities are skipped)."""
        self.clear()
        self.apply(bids, asks, event_ms)

    def apply(self, bids: Iterable[Level], asks: Iterable[Level], event_ms: int | None = None) -> None:
        """Apply delta levels in order: each sets its price's quantity, zero deleting it."""
        # BookSide.set inlined: a Python call per level was a tenth of a depth event's cost
        for side, rows in ((self.bids, bids), (self.asks, asks)):
            levels, prices = side.levels, side.prices
            for price, qty in rows:
                if qty:
                    if price not in levels:
                        insort(prices, price)
                    levels[price] = qty
                elif price in levels:
                    del levels[price]
                    del prices[bisect_left(prices, price)]
        if event_ms is not None:
            self.event_ms = event_ms

    def best_bid(self) -> Level | None:
        """The highest bid, or None."""
        return self.bids.best()

    def best_ask(self) -> Level | None:
        """The lowest ask, or None."""
        return self.asks.best()

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        """The ``n`` best bids and asks, best first."""
        return self.bids.top(n), self.asks.top(n)

    def crossed(self) -> bool:
        """Whether the best bid is at or above the best ask (locked or crossed: no real book looks like that)."""
        bids, asks = self.bids.prices, self.asks.prices
        return bool(bids) and bool(asks) and bids[-1] >= asks[0]

    def metrics(self) -> BookMetrics | None:
        """The 1 s metrics, or None while either side is empty (no mid price to measure from)."""
        bid, ask = self.bids.best(), self.asks.best()
        if bid is None or ask is None:
            return None
        mid = (bid[0] + ask[0]) / _TWO
        bid_10, ask_10 = self.bids.depth_to(mid * (1 - BAND_10BPS)), self.asks.depth_to(mid * (1 + BAND_10BPS))
        near = bid_10 + ask_10
        return BookMetrics(
            best_bid=bid[0],
            best_ask=ask[0],
            spread=ask[0] - bid[0],
            mid=mid,
            bid_depth_10bps=bid_10,
            ask_depth_10bps=ask_10,
            bid_depth_1pct=self.bids.depth_to(mid * (1 - BAND_1PCT)),
            ask_depth_1pct=self.asks.depth_to(mid * (1 + BAND_1PCT)),
            imbalance=(bid_10 - ask_10) / near if near else Decimal(0),
        )

    def as_lists(self, n: int) -> dict[str, list[list[str]]]:
        """The top ``n`` of each side as ``{"bids": [[price, qty], ...], "asks": ...}``, exact decimal strings."""
        bids, asks = self.top(n)
        return {
            "bids": [[format(p, "f"), format(q, "f")] for p, q in bids],
            "asks": [[format(p, "f"), format(q, "f")] for p, q in asks],
        }


def levels_of(book: L2Book) -> tuple[Sequence[Level], Sequence[Level]]:
    """Every level of both sides, best first (for comparisons in tests and tools)."""
    return book.bids.top(len(book.bids)), book.asks.top(len(book.asks))
