"""What ``consume_books`` does with the messages of ``market.books``, without I/O: one :class:`L2Book` per market,
and the rows to store (docs/BOOKS.md, "Storage").

A market's book starts at a valid snapshot and follows the deltas that chain after it (the first may straddle the
snapshot's ``last_id`` + 1, as Binance's first event after a sync does). A snapshot with ``valid`` false, or a delta
that does not chain, drops the book until the next valid snapshot.

Rows: for each second (:class:`MetricRow`) and each ``BOOK_STORE_EVERY_S`` window (:class:`SnapshotRow`) of exchange
event time, the book as it stood after the last update of that window read so far. A window's row is made when an
update of a later window arrives, when the book breaks, and at the end of each batch (the open window, written again
as it fills). Every row carries the Kafka offset of the last message applied, and the store only ever moves a row
to a later offset: the stored rows therefore do not depend on where batches ended, nor on how often messages are
replayed.

A valid snapshot replaces the whole state of its market: after it, the state depends on that message alone. That is
what the restart relies on (:class:`BookKeeper.replay_from`). A snapshot too big for one Kafka message comes in
consecutive parts (:mod:`books.messages`): it is applied when its last part arrives, as if it were the first part's
message; parts that do not follow one another (a delta or another snapshot between them, one missing) are dropped
and counted (``incomplete_snapshots``), and the market's book goes on as it was before the first part.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from books.book import BookMetrics, L2Book, Level, parse_levels
from books.messages import MAX_PARTS, READABLE_VERSIONS

_KINDS = ("delta", "snapshot")


class BookMessageError(ValueError):
    """A ``market.books`` message that does not follow the schema (it goes to the dead-letter topic)."""


@dataclass(frozen=True, slots=True)
class BookMessage:
    """One decoded ``market.books`` message (docs/BOOKS.md, "The topic market.books")."""

    exchange: str
    symbol: str
    kind: str
    first_id: int | None
    last_id: int | None
    t: int | None
    valid: bool
    bids: list[Level]
    asks: list[Level]
    #: (index, count) of a snapshot sent in parts; (0, 1) for a whole one
    part: tuple[int, int] = (0, 1)


def _part(data: dict[str, Any], kind: str, valid: bool) -> tuple[int, int]:
    value = data.get("part")
    if value is None:
        return (0, 1)
    if data.get("v") == 1 or kind != "snapshot" or not valid:
        raise BookMessageError("only a valid snapshot of schema 2 may come in parts")
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in value)
        or not 0 <= value[0] < value[1] <= MAX_PARTS
    ):
        raise BookMessageError(f"part must be [index, count] with 0 <= index < count <= {MAX_PARTS}")
    return (value[0], value[1])


def _optional_int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BookMessageError(f"{name} must be an integer or null, got {str(value)[:40]!r}")
    return value


def _text(data: dict[str, Any], name: str, longest: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= longest:
        raise BookMessageError(f"{name} must be a string of 1..{longest} characters, got {str(value)[:40]!r}")
    return value


def decode(value: bytes | None) -> BookMessage:
    """Parse and check one message value.

    Raises:
        BookMessageError: the value is not a message of this schema (the reason names what is wrong).
    """
    if value is None:
        raise BookMessageError("empty message")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BookMessageError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BookMessageError("message is not a JSON object")
    if data.get("v") not in READABLE_VERSIONS:
        raise BookMessageError(f"unknown schema version {str(data.get('v'))[:20]!r}")
    kind = data.get("kind")
    if kind not in _KINDS:
        raise BookMessageError(f"unknown kind {str(kind)[:20]!r}")
    valid = data.get("valid")
    if not isinstance(valid, bool):
        raise BookMessageError("valid must be true or false")
    first_id, last_id, t = _optional_int(data, "first_id"), _optional_int(data, "last_id"), _optional_int(data, "t")
    if kind == "delta" and (first_id is None or last_id is None or t is None or not valid):
        raise BookMessageError("a delta needs first_id, last_id, t and valid true")
    if kind == "snapshot" and valid and last_id is None:
        raise BookMessageError("a valid snapshot needs last_id")
    if first_id is not None and last_id is not None and first_id > last_id:
        raise BookMessageError(f"first_id {first_id} is after last_id {last_id}")
    bids, asks = data.get("bids"), data.get("asks")
    if not isinstance(bids, list) or not isinstance(asks, list):
        raise BookMessageError("bids and asks must be lists")
    return BookMessage(
        exchange=_text(data, "exchange", 16),
        symbol=_text(data, "symbol", 32),
        kind=kind,
        first_id=first_id,
        last_id=last_id,
        t=t,
        valid=valid,
        bids=parse_levels(bids, "bids"),
        asks=parse_levels(asks, "asks"),
        part=_part(data, kind, valid),
    )


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One ``books_bookmetric`` row: the book at the end of ``second`` (epoch s) of event time."""

    exchange: str
    symbol: str
    second: int
    t: int
    last_id: int | None
    valid: bool
    metrics: BookMetrics | None
    source_offset: int

    @property
    def second_at(self) -> datetime:
        """``second`` as an aware datetime."""
        return datetime.fromtimestamp(self.second, UTC)


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """One ``books_booksnapshot`` row: the top N at the end of the window starting at ``window_start`` (epoch s)."""

    exchange: str
    symbol: str
    window_start: int
    t: int
    last_id: int | None
    valid: bool
    bids: list[list[str]]
    asks: list[list[str]]
    source_offset: int

    @property
    def window_at(self) -> datetime:
        """``window_start`` as an aware datetime."""
        return datetime.fromtimestamp(self.window_start, UTC)


@dataclass(slots=True)
class Parts:
    """A snapshot arriving in parts: what came so far."""

    #: offset of its first part (where a restart re-reads it from)
    offset: int
    count: int
    #: the index of the part expected next
    next: int
    last_id: int | None
    t: int | None
    bids: list[Level]
    asks: list[Level]


@dataclass(slots=True)
class Market:
    """One market's state: its book (None while waiting for a valid snapshot) and where it came from."""

    exchange: str
    symbol: str
    book: L2Book | None = None
    last_id: int | None = None
    straddle: bool = False
    #: offset of the valid snapshot message the book was built from
    snapshot_offset: int | None = None
    #: offset of the last message applied
    offset: int = -1
    #: a snapshot whose parts are still arriving
    parts: Parts | None = None


@dataclass
class Output:
    """What one batch made: the rows (one per key, the last made), and the markets whose book changed."""

    metrics: dict[tuple[str, str, int], MetricRow] = field(default_factory=dict)
    snapshots: dict[tuple[str, str, int], SnapshotRow] = field(default_factory=dict)
    changed: dict[tuple[str, str], Market] = field(default_factory=dict)
    breaks: int = 0
    invalid_snapshots: int = 0
    #: snapshots in parts that did not arrive whole and in order (dropped)
    incomplete_snapshots: int = 0
    applied: int = 0


class BookKeeper:
    """The books of one Kafka partition's markets; ``store_every_s`` and ``depth`` are the snapshot rows'
    window and levels a side (``BOOK_STORE_EVERY_S``, ``BOOK_DEPTH_LEVELS``)."""

    def __init__(self, store_every_s: int, depth: int) -> None:
        """No market yet."""
        self.window_ms, self.depth = store_every_s * 1000, depth
        self.markets: dict[tuple[str, str], Market] = {}
        self.out = Output()

    def market(self, exchange: str, symbol: str) -> Market:
        """The state of one market (made on first sight)."""
        key = (exchange, symbol)
        found = self.markets.get(key)
        if found is None:
            found = self.markets[key] = Market(exchange, symbol)
        return found

    def apply(self, offset: int, message: BookMessage) -> None:
        """Apply one message read at ``offset``."""
        m = self.market(message.exchange, message.symbol)
        snapshot_offset = offset
        if m.parts is not None and message.part[0] == 0:
            # Whatever comes now but the next part ends the snapshot in parts: it cannot be completed any more.
            self.out.incomplete_snapshots += 1
            m.parts = None
        if message.part[1] > 1:
            whole = self._assemble(m, offset, message)
            if whole is None:
                return
            snapshot_offset, message = whole
        if message.kind == "snapshot":
            if not message.valid:
                self.out.invalid_snapshots += 1
                self._break(m, offset)
                return
            self._close_if_moved(m, message.t)
            book = L2Book()
            book.apply_snapshot(message.bids, message.asks, message.t)
            m.book, m.last_id, m.straddle, m.snapshot_offset = book, message.last_id, True, snapshot_offset
        else:
            if m.book is None or m.last_id is None:
                return  # waiting for a valid snapshot
            first, last = message.first_id, message.last_id
            assert first is not None  # decode checked a delta's ids
            assert last is not None
            chains = first <= m.last_id + 1 <= last if m.straddle else first == m.last_id + 1
            if not chains:
                self.out.breaks += 1
                self._break(m, offset)
                return
            self._close_if_moved(m, message.t)
            m.book.apply(message.bids, message.asks, message.t)
            m.last_id, m.straddle = last, False
        m.offset = offset
        self.out.applied += 1
        self.out.changed[(m.exchange, m.symbol)] = m

    def _assemble(self, m: Market, offset: int, message: BookMessage) -> tuple[int, BookMessage] | None:
        """Add one part of a snapshot in parts; the whole snapshot and its first part's offset after the last part,
        else None."""
        index, count = message.part
        if index == 0:
            m.parts = Parts(offset, count, 1, message.last_id, message.t, list(message.bids), list(message.asks))
            return None
        parts = m.parts
        if parts is None:
            return None  # a part without its beginning (the consumer started after it): wait for the next snapshot
        if (index, count, message.last_id, message.t) != (parts.next, parts.count, parts.last_id, parts.t):
            self.out.incomplete_snapshots += 1
            m.parts = None
            return None
        parts.bids.extend(message.bids)
        parts.asks.extend(message.asks)
        parts.next += 1
        if parts.next < count:
            return None
        m.parts = None
        return parts.offset, replace(message, bids=parts.bids, asks=parts.asks, part=(0, 1))

    def _close_if_moved(self, m: Market, t: int | None) -> None:
        """Before an update at ``t``: write the open windows of the book as it stands if ``t`` leaves them."""
        book = m.book
        if book is None or book.event_ms is None:
            return
        now = book.event_ms
        if t is None or t // 1000 != now // 1000 or t // self.window_ms != now // self.window_ms:
            self._emit(m)

    def _emit(self, m: Market) -> None:
        """The rows of the book as it stands, for the second and the window its last update is in."""
        book = m.book
        if book is None or book.event_ms is None:
            return
        t = book.event_ms
        second, window = t // 1000, t // self.window_ms * self.window_ms // 1000
        self.out.metrics[(m.exchange, m.symbol, second)] = MetricRow(
            m.exchange, m.symbol, second, t, m.last_id, True, book.metrics(), m.offset
        )
        lists = book.as_lists(self.depth)
        self.out.snapshots[(m.exchange, m.symbol, window)] = SnapshotRow(
            m.exchange, m.symbol, window, t, m.last_id, True, lists["bids"], lists["asks"], m.offset
        )

    def _break(self, m: Market, offset: int) -> None:
        """Drop the book: its last second and window are stored as not valid (if it was dated at all)."""
        book = m.book
        if book is not None and book.event_ms is not None:
            t = book.event_ms
            second, window = t // 1000, t // self.window_ms * self.window_ms // 1000
            self.out.metrics[(m.exchange, m.symbol, second)] = MetricRow(
                m.exchange, m.symbol, second, t, None, False, None, offset
            )
            self.out.snapshots[(m.exchange, m.symbol, window)] = SnapshotRow(
                m.exchange, m.symbol, window, t, None, False, [], [], offset
            )
        m.book, m.last_id, m.straddle, m.snapshot_offset, m.offset = None, None, False, None, offset
        self.out.changed[(m.exchange, m.symbol)] = m

    def take(self) -> Output:
        """End of a batch: the open windows of every changed book are written too; the batch's output, and a fresh
        one for the next."""
        for m in self.out.changed.values():
            self._emit(m)
        out, self.out = self.out, Output()
        return out

    def replay_from(self, through: int) -> int:
        """The offset a restart must re-read from to rebuild every book held after the message before ``through``:
        the oldest valid snapshot a held book was built from (``through`` when no book is held)."""
        held = [m.snapshot_offset for m in self.markets.values() if m.snapshot_offset is not None]
        arriving = [m.parts.offset for m in self.markets.values() if m.parts is not None]
        return min(held + arriving, default=through)
