"""An L2 (price-level) order book with exact decimal prices and quantities, and its 1 s metrics.

Each side is a dict ``price -> qty`` (both :class:`~decimal.Decimal`); its order is kept only as far as its readers
need it. Why this shape (docs/BOOKS.md, "The data structure"):

- Every write is a dict store or delete, O(1). Most of Binance's level updates add or remove a price (236,000 of the
  recording's 298,000), so a sorted list of every price kept on each write (a binary search of ``Decimal``
  comparisons and a ``memmove`` per added or removed price) was half of a depth event's handling, and is gone.
- The crossed check after every event needs only each side's best price: the :data:`TOP_KEPT` best prices are kept
  in order, touched only by a price better than a bound below them (:class:`BookSide`), and refilled from the dict
  the rare times the market moves past all of them.
- Reads of the whole order (top N past those, truncation, the metrics' price bands: once a second or less on the
  ingest path) bring a sorted list of every price up to date when they come, replaying the prices added and
  removed since, or sorting afresh when that is cheaper.
- :class:`~decimal.Decimal` keeps the exchange's exact digits, trailing zeros included (``Decimal("0.10000000")``
  formats back to ``"0.10000000"``), which Kraken's checksum needs; floats would not, and they would also make two
  prices that differ in the 9th decimal compare wrongly. No structure copies or respells a price: each holds the
  dict's key objects.

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
#: how many of a side's best prices are kept in order on every write (the crossed check, best, small top-N reads):
#: on the Binance recording, 32 were emptied by the market's moves every 45 events (each refill sorts the side),
#: 128 every 190; more costs each write near the touch a longer insert
TOP_KEPT = 128
#: the log of added and removed prices may outgrow a quarter of the side by this much before it is dropped for a
#: fresh sort at the next read
LOG_SLACK = 64


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
    """One side of a book: ``price -> qty``, its best prices kept in order, the rest ordered when read.

    ``bids`` want the highest price first, ``asks`` the lowest: both orders are ascending, and ``descending`` says
    from which end "best" is read. Three structures, each kept only as exact as its readers need:

    - ``levels``, the dict, is always current;
    - ``_top``, the side's best prices (at most :data:`TOP_KEPT`, always exactly the best that many), kept in order on
      every write but touched only by a price better than ``_bound``: the crossed check after every event, ``best``
      and ``top(n)`` for small ``n`` read it without ordering the side. When deletions empty it (the market moved
      past every price it held), it is refilled at the next read;
    - ``_order``, every price in order, brought up to date only when read (``top(n)`` past ``_top``, ``truncate``,
      ``depth_to``): by replaying ``_log``, the prices added or removed since, or by sorting ``levels`` afresh when
      the log grew past a quarter of the side (``_order`` None).
    """

    __slots__ = ("_bound", "_log", "_order", "_top", "descending", "levels")

    def __init__(self, descending: bool) -> None:
        """An empty side; ``descending`` for bids (best = highest)."""
        self.descending = descending
        self.levels: dict[Decimal, Decimal] = {}
        self._top: list[Decimal] = []
        # Every price held but not in _top is at or below this bound (asks: at or above), and every price in _top
        # is strictly better: a new price better than the bound belongs in _top, whatever _top holds then. None: no
        # price is held outside _top.
        self._bound: Decimal | None = None
        self._order: list[Decimal] | None = []
        self._log: list[Decimal] = []

    def __len__(self) -> int:
        """How many price levels the side holds."""
        return len(self.levels)

    def set(self, price: Decimal, qty: Decimal) -> None:
        """Set the quantity at ``price``; zero deletes the level (a missing one is no error)."""
        self.update(((price, qty),))

    def update(self, rows: Iterable[Level]) -> None:
        """Apply levels in order: each sets its price's quantity, zero deleting it (a missing one is no error)."""
        levels, top, bound = self.levels, self._top, self._bound
        log = self._log
        remember = log.append
        # Two copies of one loop, for bids and asks: a test of the side per level costs more than the duplication.
        # A new price or a removed one is logged for _order; _top is touched only by a price better than the bound.
        if self.descending:
            for price, qty in rows:
                if qty:
                    if price not in levels:
                        remember(price)
                        if bound is None or price > bound:
                            insort(top, price)
                            if len(top) > TOP_KEPT:
                                bound = top.pop(0)
                    levels[price] = qty
                elif price in levels:
                    del levels[price]
                    remember(price)
                    if bound is None or price > bound:
                        del top[bisect_left(top, price)]
        else:
            for price, qty in rows:
                if qty:
                    if price not in levels:
                        remember(price)
                        if bound is None or price < bound:
                            insort(top, price)
                            if len(top) > TOP_KEPT:
                                bound = top.pop()
                    levels[price] = qty
                elif price in levels:
                    del levels[price]
                    remember(price)
                    if bound is None or price < bound:
                        del top[bisect_left(top, price)]
        self._bound = bound
        if len(log) > (len(levels) >> 2) + LOG_SLACK:
            # Replaying the log would cost more than sorting the side afresh when it is next read (a snapshot, or a
            # side nobody reads between events): forget it. This also bounds the log.
            log.clear()
            self._order = None

    def clear(self) -> None:
        """Remove every level."""
        self.levels.clear()
        self._top.clear()
        self._bound = None
        self._order = []
        self._log.clear()

    def _kept(self) -> list[Decimal]:
        """``_top``, refilled if deletions emptied it while the side still holds levels (the market moved past
        every price it held and past the bound: rare)."""
        top = self._top
        if not top and self.levels:
            self._refill(self._ordered())
        return top

    def _refill(self, order: list[Decimal]) -> None:
        """Set ``_top`` and the bound from every price in ascending order."""
        if self.descending:
            self._top[:] = order[-TOP_KEPT:]
            self._bound = order[-TOP_KEPT - 1] if len(order) > TOP_KEPT else None
        else:
            self._top[:] = order[:TOP_KEPT]
            self._bound = order[TOP_KEPT] if len(order) > TOP_KEPT else None

    def _ordered(self) -> list[Decimal]:
        """Every price in ascending order, brought up to date."""
        order, log = self._order, self._log
        if order is None:
            order = self._order = sorted(self.levels)
            log.clear()
        elif log:
            # Each logged price flipped between held and not held: replay the flips in order.
            for price in log:
                at = bisect_left(order, price)
                if at < len(order) and order[at] == price:
                    del order[at]
                else:
                    order.insert(at, price)
            log.clear()
        return order

    def best_price(self) -> Decimal | None:
        """The best price, or None when the side is empty."""
        top = self._top or self._kept()
        if not top:
            return None
        return top[-1] if self.descending else top[0]

    def best(self) -> Level | None:
        """The best level, or None when the side is empty."""
        price = self.best_price()
        return None if price is None else (price, self.levels[price])

    def top(self, n: int) -> list[Level]:
        """The ``n`` best levels, best first."""
        if n <= 0:
            return []
        levels, top = self.levels, self._kept()
        if n > len(top) and len(top) < len(levels):
            top = self._ordered()
            self._refill(top)  # the whole order is at hand: _top from it
        chosen: Iterable[Decimal] = reversed(top[-n:]) if self.descending else top[:n]
        return [(price, levels[price]) for price in chosen]

    def truncate(self, depth: int) -> None:
        """Keep only the ``depth`` best levels (Kraken: levels that fall out of the subscribed depth get no delete)."""
        depth = max(depth, 0)
        excess = len(self.levels) - depth
        if excess <= 0:
            return
        order = self._ordered()
        if self.descending:
            dropped = order[:excess]
            del order[:excess]
        else:
            dropped = order[depth:]
            del order[depth:]
        levels = self.levels
        for price in dropped:
            del levels[price]
        top = self._top
        if len(top) > depth:
            if self.descending:
                del top[: len(top) - depth]
            else:
                del top[depth:]
        if len(top) >= depth:
            self._bound = None  # every price left is in _top

    def depth_to(self, limit: Decimal) -> Decimal:
        """The summed quantity of the levels at ``limit`` or better (bids: price >= limit; asks: price <= limit)."""
        prices, levels = self._ordered(), self.levels
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
        self.bids.update(bids)
        self.asks.update(asks)
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
        # after every event: read from the kept best prices, never by ordering a side
        bids = self.bids._top or self.bids._kept()
        asks = self.asks._top or self.asks._kept()
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
