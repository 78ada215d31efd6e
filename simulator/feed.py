"""The simulated market: one paced trade feed fanned out to the connections, and the REST trade store.

The feed runs on its own, like a real exchange: it starts when the first client subscribes (after
``start_delay``), paces trades by their recorded trade time divided by ``speed`` and never rewinds, so a
client that reconnects resumes where the market is and must backfill what it missed over REST. At speed 0
it sends as fast as the slowest subscriber reads (bounded queues) and waits while nobody is subscribed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from ingest.exchanges import get
from ingest.records import TradeRecord
from simulator.depth import DepthEvent, DepthTape
from simulator.replay import read_many, read_trades

logger = logging.getLogger(__name__)

# Longest first, so BTCFDUSD is BTC/FDUSD and not BTCFD/USD.
_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "DAI", "USD", "EUR", "GBP", "TRY", "BTC", "ETH", "BNB")
_SEPARATOR = re.compile(r"[-/_]")

Item = tuple[TradeRecord, Any]
"""A trade and its protocol's pre-encoded form (encoded once, shared by every connection); or, from a depth tape,
a :class:`~simulator.depth.DepthEvent` and its event bytes (only to connections that asked for depth)."""
Chunk = list[Item]


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` / ``BTC-USDT`` / ``BTC/USDT`` -> ``("BTC", "USDT")``; ``("X", "")`` when no quote is known."""
    symbol = symbol.upper()
    parts = _SEPARATOR.split(symbol, maxsplit=1)
    if len(parts) == 2:
        return parts[0], parts[1]
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, ""


def exchange_symbol(exchange: str, symbol: str) -> str:
    """The symbol in ``exchange``'s own spelling: ``BTCUSDT`` (Binance), ``BTC-USDT`` (Coinbase), ``BTC/USDT``."""
    spelling = get(exchange).symbols  # an unknown exchange raises, naming the known ones
    base, quote = split_symbol(symbol)
    return spelling.join(base, quote) if quote else base


def for_exchange(records: Iterable[TradeRecord], exchange: str) -> Iterator[TradeRecord]:
    """Relabel trades recorded elsewhere as ``exchange``'s (its name and symbol spelling)."""
    names: dict[str, str] = {}
    for record in records:
        if record.exchange == exchange:
            yield record
            continue
        symbol = names.get(record.symbol)
        if symbol is None:
            symbol = names[record.symbol] = exchange_symbol(exchange, record.symbol)
        yield record._replace(exchange=exchange, symbol=symbol)


def looped(
    source: Callable[[], Iterable[TradeRecord]],
    cache_limit: int = 250_000,
    on_pass: Callable[[int], None] | None = None,
) -> Iterator[TradeRecord]:
    """Repeat ``source`` forever; each pass shifts ids past the previous pass's last id (per symbol) and times
    by the first pass's span, so ids stay consecutive and times keep increasing.

    A source of at most ``cache_limit`` trades is kept in memory after the first pass (re-parsing a small file
    on every pass would bound a benchmark); a larger one is read again each pass. ``on_pass(time_shift)`` is called
    as each pass after the first begins (the recorded depth loops with the trades: :meth:`DepthTape.next_pass`).
    """
    cache: list[TradeRecord] | None = []
    first_ids: dict[str, int] = {}
    last_ids: dict[str, int] = {}
    first_time: int | None = None
    last_time = 0
    for record in source():
        first_ids.setdefault(record.symbol, record.trade_id)
        last_ids[record.symbol] = record.trade_id
        if first_time is None:
            first_time = record.trade_time
        last_time = max(last_time, record.trade_time)
        if cache is not None:
            cache.append(record)
            if len(cache) > cache_limit:
                cache = None
        yield record
    if first_time is None:
        return  # an empty source would loop forever without yielding
    span = last_time - first_time + 1
    id_spans = {symbol: last_ids[symbol] - first + 1 for symbol, first in first_ids.items()}
    passes = 1
    while True:
        time_shift = span * passes
        shifts = {symbol: id_span * passes for symbol, id_span in id_spans.items()}
        if on_pass is not None:
            on_pass(time_shift)
        for record in source() if cache is None else cache:
            # The constructor, not _replace(): this is the hot path of a looping benchmark.
            yield TradeRecord(
                record.exchange,
                record.symbol,
                record.trade_id + shifts.get(record.symbol, 0),
                record.price,
                record.quantity,
                record.is_buyer_maker,
                record.trade_time + time_shift,
                record.event_time + time_shift,
                record.received_at + time_shift,
            )
        passes += 1


PaceKey = Callable[[TradeRecord], int]
"""The time (ms) by which the feed paces a trade: its trade time, or its offset into its own stream."""


def trade_time(record: TradeRecord) -> int:
    """The default pace key."""
    return record.trade_time


def on_present_clock(
    records: Iterable[TradeRecord],
    pace: PaceKey,
    clock_ms: Callable[[], int],
    on_symbol: Callable[[str, int], None] | None = None,
) -> tuple[Iterator[TradeRecord], PaceKey]:
    """Shift recorded times to the present: the first trade drawn gets ``clock_ms()`` at that moment (when the
    feed starts) and every later one keeps its pace offset from it, so a 2024 recording reads as live trades of
    today (trade ages, 24-hour figures). Trade, event and receive times move together; returns the shifted trades
    and their pace key (plain trade time: every stream is on the one present timeline now). ``on_symbol(symbol,
    delta)`` is told how far each symbol's times moved, at its first trade (the recorded depth moves as far:
    :meth:`DepthTape.align`)."""

    def shifted() -> Iterator[TradeRecord]:
        base: int | None = None
        seen: set[str] = set()
        for record in records:
            if base is None:
                base = clock_ms() - pace(record)
            delta = base + pace(record) - record.trade_time
            if on_symbol is not None and record.symbol not in seen:
                seen.add(record.symbol)
                on_symbol(record.symbol, delta)
            yield TradeRecord(
                record.exchange,
                record.symbol,
                record.trade_id,
                record.price,
                record.quantity,
                record.is_buyer_maker,
                record.trade_time + delta,
                record.event_time + delta,
                record.received_at + delta,
            )

    return shifted(), trade_time


def replay_source(
    paths: Iterable[str | Path],
    symbol: str | None = None,
    *,
    loop: bool = False,
    exchange: str | None = None,
    sample: int = 10_000,
    on_pass: Callable[[set[str], int], None] | None = None,
) -> tuple[Iterator[TradeRecord], PaceKey, list[str]]:
    """Recorded files as one feed: ``(trades, pace key, symbols)``.

    Files are grouped into streams by their first trade's symbol (0808 and 0809 of BTCUSDT make one stream).
    Each stream keeps its recorded times and starts at the same moment as the others: streams are merged and
    paced by the offset from their own first trade, so a TRXUSDT file from 2025 plays alongside a BTCUSDT one
    from 2024 instead of months later. With ``loop`` each stream repeats on its own (:func:`looped`).
    ``exchange`` relabels the trades as that exchange's (see :func:`for_exchange`); symbols are in its spelling.
    The symbols announced are those of the first ``sample`` trades of each file (a recording of several
    symbols, like Coinbase's, names them all early), so clients can subscribe before the market opens.
    ``on_pass(symbols, time_shift)``: a looping stream of those symbols (in the files' spelling) began a pass.
    """
    groups: dict[str, list[str | Path]] = {}
    origins_by_group: dict[str, int] = {}
    symbols_by_group: dict[str, set[str]] = {}
    seen: dict[str, None] = {}
    for path in paths:
        head = list(itertools.islice(read_trades(path, symbol), sample))
        if not head:
            continue
        first = head[0]
        groups.setdefault(first.symbol, []).append(path)
        origins_by_group[first.symbol] = min(origins_by_group.get(first.symbol, first.trade_time), first.trade_time)
        symbols_by_group.setdefault(first.symbol, set()).update(record.symbol for record in head)
        seen.update(dict.fromkeys(record.symbol for record in head))
    streams = []
    for name, files in groups.items():

        def read(files: list[str | Path] = files) -> Iterator[TradeRecord]:
            return read_many(files, symbol)

        def told(time_shift: int, names: set[str] = symbols_by_group[name]) -> None:
            assert on_pass is not None
            on_pass(names, time_shift)

        stream = looped(read, on_pass=told if on_pass is not None else None) if loop else read()
        streams.append(for_exchange(stream, exchange) if exchange else stream)
    names = [exchange_symbol(exchange, name) if exchange else name for name in seen]
    if len(streams) <= 1:
        return (streams[0] if streams else iter(())), trade_time, names
    origins: dict[str, int] = {}

    def tagged(records: Iterator[TradeRecord], origin: int) -> Iterator[TradeRecord]:
        # Symbols of multi-symbol files are learnt as they come, before the merge asks for their key.
        for record in records:
            if record.symbol not in origins:
                origins[record.symbol] = origin
            yield record

    def offset(record: TradeRecord) -> int:
        return record.trade_time - origins[record.symbol]

    merged = heapq.merge(
        *(tagged(stream, origins_by_group[name]) for stream, name in zip(streams, groups, strict=True)), key=offset
    )
    return merged, offset, names


def _trade_time(record: TradeRecord) -> int:
    return record.trade_time


class TradeStore:
    """Everything the feed produced, per symbol, for REST ``historicalTrades``: bounded, ids ascending."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = max(capacity, 1)
        self._ids: dict[str, list[int]] = {}
        self._records: dict[str, list[TradeRecord]] = {}

    def add(self, record: TradeRecord) -> None:
        """Keep ``record``; ids that do not increase (overlapping files) are not stored twice."""
        ids = self._ids.get(record.symbol)
        if ids is None:
            ids = self._ids[record.symbol] = []
            self._records[record.symbol] = []
        elif record.trade_id <= ids[-1]:
            return
        ids.append(record.trade_id)
        records = self._records[record.symbol]
        records.append(record)
        # Trim in steps of a quarter of the capacity: amortised O(1) per trade.
        if len(ids) > self.capacity + self.capacity // 4:
            excess = len(ids) - self.capacity
            del ids[:excess]
            del records[:excess]

    def symbols(self) -> set[str]:
        """Symbols with at least one stored trade."""
        return set(self._ids)

    def last_ids(self) -> dict[str, int]:
        """The newest id produced per symbol."""
        return {symbol: ids[-1] for symbol, ids in self._ids.items() if ids}

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._ids.values())

    def _window(self, symbol: str, history: int) -> int:
        # Where REST's reach starts: the newest ``history`` trades (0: everything stored).
        size = len(self._ids.get(symbol, ()))
        return max(size - history, 0) if history else 0

    def since(self, symbol: str, from_id: int | None, limit: int, history: int = 0) -> list[TradeRecord]:
        """Up to ``limit`` trades with id >= ``from_id`` (oldest first); the latest ``limit`` without ``from_id``.
        ``history`` bounds how far back REST reaches: only the newest ``history`` trades (0: all stored)."""
        records = self._records.get(symbol, [])
        if from_id is None:
            return records[-limit:] if limit else []
        start = bisect_left(self._ids.get(symbol, []), from_id, lo=self._window(symbol, history))
        return records[start : start + limit]

    def before(self, symbol: str, before_id: int | None, limit: int, history: int = 0) -> list[TradeRecord]:
        """The newest ``limit`` trades with id < ``before_id`` (all stored without it), oldest first, within
        the newest ``history`` (0: all)."""
        records = self._records.get(symbol, [])
        lo = self._window(symbol, history)
        end = len(records) if before_id is None else bisect_left(self._ids.get(symbol, []), before_id, lo=lo)
        return records[max(end - limit, lo) : end] if end > lo else []

    def after_time(self, symbol: str, time_ms: int, limit: int, history: int = 0) -> list[TradeRecord]:
        """Up to ``limit`` trades traded after ``time_ms`` (oldest first), within the newest ``history``."""
        records = self._records.get(symbol, [])
        lo = self._window(symbol, history)
        start = bisect_right(records, time_ms, lo=lo, key=_trade_time)
        return records[start : start + limit]

    def latest(self, symbol: str, count: int) -> list[TradeRecord]:
        """The ``count`` most recent trades of ``symbol``, oldest first."""
        return self.since(symbol, None, count)


class Subscriber:
    """One connection's view of the feed: the symbols it wants and a bounded queue of chunks."""

    def __init__(self, feed: Feed, max_chunks: int = 4) -> None:
        self.feed = feed
        self.symbols: set[str] = set()
        self.queue: asyncio.Queue[Chunk] = asyncio.Queue(max_chunks)
        self.closed = False
        #: whether this connection subscribed a depth stream (else depth events are filtered out of its chunks)
        self.depth = False

    def subscribe(self, symbols: Iterable[str]) -> None:
        """Add symbols; the feed starts delivering with its next chunk."""
        self.symbols.update(symbols)
        if self.symbols and not self.closed:
            self.feed.attach(self)

    def unsubscribe(self, symbols: Iterable[str]) -> None:
        """Remove symbols; with none left the feed stops delivering to this connection."""
        self.symbols.difference_update(symbols)
        if not self.symbols:
            self.feed.detach(self)

    async def put(self, chunk: Chunk) -> None:
        """Called by the feed: wait for room (backpressure) unless the connection is gone."""
        if not self.closed:
            await self.queue.put(chunk)

    async def get(self) -> Chunk:
        """The next chunk, filtered to this connection's symbols (possibly empty)."""
        chunk = await self.queue.get()
        wanted = self.symbols
        if self.feed.depth_sent and not self.depth:
            return [item for item in chunk if item[0].symbol in wanted and item[0].__class__ is not DepthEvent]
        return [item for item in chunk if item[0].symbol in wanted]

    def close(self) -> None:
        """Leave the feed; unblock a feed waiting for room in this queue."""
        self.closed = True
        self.feed.detach(self)
        while not self.queue.empty():
            self.queue.get_nowait()


class Feed:
    """The market: pulls trades from ``source``, paces them, stores them for REST and fans them out."""

    def __init__(
        self,
        source: Iterable[TradeRecord],
        encode: Callable[[TradeRecord], Any],
        *,
        speed: float = 1.0,
        max_rate: float = 0.0,
        gap_every: int = 0,
        start_delay: float = 0.0,
        chunk_size: int = 512,
        store: TradeStore | None = None,
        symbols: Iterable[str] = (),
        pace: PaceKey = trade_time,
        depth: DepthTape | None = None,
    ) -> None:
        self.source = source
        #: recorded depth events, sent in receive order between the trades (Binance replays), or None
        self.depth = depth
        self.depth_sent = False  # a depth event went out: trade-only connections filter their chunks from now on
        self.pace = pace
        self.encode = encode
        self.speed = speed
        self.max_rate = max_rate  # trades/s cap on top of ``speed`` (0: none), for paced benchmarks
        self.gap_every = gap_every
        self.start_delay = start_delay
        self.chunk_size = max(chunk_size, 1)
        self.store = store if store is not None else TradeStore()
        self.known_symbols: set[str] = set(symbols)
        self.subscribers: set[Subscriber] = set()
        self.produced = 0
        self.skipped = 0
        self.finished = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._per_symbol: dict[str, int] = {}

    def attach(self, subscriber: Subscriber) -> None:
        """Start delivering chunks to ``subscriber`` (also starts the feed on the first one)."""
        self.subscribers.add(subscriber)
        self._subscribed.set()

    def detach(self, subscriber: Subscriber) -> None:
        """Stop delivering to ``subscriber``."""
        self.subscribers.discard(subscriber)
        if not self.subscribers:
            self._subscribed.clear()

    def symbols(self) -> set[str]:
        """Symbols this market trades (announced ones and those the feed produced so far)."""
        return self.known_symbols | self.store.symbols()

    def _depth_due(self, until: int, append: Callable[[Item], None]) -> None:
        # The depth events received up to ``until`` (ms): out to the connections that asked for depth, if any.
        assert self.depth is not None
        events = self.depth.due(until)
        if events and any(subscriber.depth for subscriber in self.subscribers):
            self.depth_sent = True
            for event in events:
                # Typed as a trade item: only Binance sessions that asked for depth ever see one (Subscriber.get).
                append(cast(Item, (event, event.data)))

    def _skip(self, record: TradeRecord) -> bool:
        # --gap-every N: every N-th trade of a symbol never goes out on the WebSocket (REST still has it).
        if not self.gap_every:
            return False
        count = self._per_symbol.get(record.symbol, 0) + 1
        self._per_symbol[record.symbol] = count
        return count % self.gap_every == 0

    async def _publish(self, chunk: Chunk) -> None:
        if not chunk:
            return
        if self.speed == 0:
            await self._subscribed.wait()
        for subscriber in list(self.subscribers):
            await subscriber.put(chunk)

    async def run(self) -> None:
        """Produce the whole source (forever when it loops); returns when it is exhausted."""
        await self._subscribed.wait()
        if self.start_delay:
            await asyncio.sleep(self.start_delay)
        # make bench-peer opens its measurement window on this line (the first trade goes out next).
        logger.info("simulator: feed started", extra={"subscribers": len(self.subscribers)})
        loop = asyncio.get_running_loop()
        store_add = self.store.add
        encode = self.encode
        skip = self._skip if self.gap_every else None
        chunk: Chunk = []
        append = chunk.append
        chunk_size = self.chunk_size
        anchor_wall = 0.0
        anchor_time: int | None = None
        scale = 1.0 / (1000.0 * self.speed) if self.speed else 0.0
        interval = 1.0 / self.max_rate if self.max_rate else 0.0
        rate_start = 0.0
        pace = self.pace
        depth = self.depth
        # Depth goes out before the trades of its own symbols only: another stream's receive times may be skewed
        # differently against their trade times (the demo's BTCUSDT and TRXUSDT recordings are).
        depth_symbols = depth.symbols() if depth is not None else set()
        for record in self.source:
            if interval:
                # --max-rate: trade n goes out no earlier than n / max_rate seconds after the first.
                if not rate_start:
                    rate_start = loop.time()
                delay = rate_start + self.produced * interval - loop.time()
                if delay > 0.001:
                    await self._publish(chunk)
                    chunk = []
                    append = chunk.append
                    await asyncio.sleep(delay)
            if scale:
                if anchor_time is None:
                    anchor_wall, anchor_time = loop.time(), pace(record)
                delay = anchor_wall + (pace(record) - anchor_time) * scale - loop.time()
                if delay > 0.001:
                    await self._publish(chunk)
                    chunk = []
                    append = chunk.append
                    delay = anchor_wall + (pace(record) - anchor_time) * scale - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
            if depth is not None and record.symbol in depth_symbols and depth.next_at <= record.received_at:
                self._depth_due(record.received_at, append)
            store_add(record)
            self.produced += 1
            if skip is not None and skip(record):
                self.skipped += 1
            else:
                append((record, encode(record)))
            if len(chunk) >= chunk_size:
                await self._publish(chunk)
                chunk = []
                append = chunk.append
                if not scale:
                    await asyncio.sleep(0)  # let connections and REST run between chunks
        if depth is not None:
            self._depth_due(1 << 62, append)  # the events received after the last trade
        await self._publish(chunk)
        self.finished.set()
        logger.info("simulator: feed finished", extra={"produced": self.produced, "skipped": self.skipped})
