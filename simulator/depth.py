"""Depth replay: the recorded book events of a recording, and the book consistent with what the market has sent so
far (docs/BOOKS.md, "The simulator's depth"). Binance: ``@depth@100ms`` events and REST ``/api/v3/depth``;
Coinbase: the recorded Advanced Trade ``level2`` updates (:func:`read_coinbase_l2`), the snapshot a subscription
gets; Kraken: ``book`` frames derived from the Binance events (:mod:`simulator.kraken`).

The feed takes the events in recorded order, interleaved with the trades by receive time (:meth:`DepthTape.due`).
REST serves, per symbol, the recording's own REST snapshot plus every event after it up to the moment asked, or,
when the recording holds none, the book built from every event so far, starting empty (said once in the log).
Events the fault plan keeps off the WebSocket (``--depth-drop-every``) are in the REST book all the same, as a
real exchange's book holds the updates a client missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from books.book import L2Book, Level, parse_levels
from simulator.replay import open_binary, to_millis

logger = logging.getLogger(__name__)

#: Binance's REST weight of ``/api/v3/depth`` by ``limit`` (the first bound at or above it)
DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))
#: the weight of ``/api/v3/historicalTrades``, the request the simulator's ``--rest-rate`` counts
TRADES_WEIGHT = 25
_NEVER = 1 << 62
#: the bid price a crossed-book fault adds (above any recorded ask: the book crosses whatever it holds)
CROSSING_PRICE = "99999999.00000000"

#: the fault tags of an event the tape hands out unapplied (``DepthTape(apply_faults=False)``): its session applies it
DROP = "drop"
SWAP = "swap"
CROSS = "cross"
CHECKSUM = "checksum"

#: an event's ``data`` -> (bids, asks) levels
LevelsOf = Callable[[bytes], tuple[list[Level], list[Level]]]


def binance_levels(data: bytes) -> tuple[list[Level], list[Level]]:
    """A Binance ``depthUpdate``'s ``b`` and ``a``."""
    event = orjson.loads(data)
    return parse_levels(event["b"], "b"), parse_levels(event["a"], "a")


def depth_weight(limit: int) -> int:
    """Binance's request weight of a depth snapshot of ``limit`` levels (1..5000)."""
    return next(weight for bound, weight in DEPTH_WEIGHTS if limit <= bound)


class DepthEvent(NamedTuple):
    """One recorded book event; ``data`` is the event object exactly as the stream carries it (Binance: the
    ``depthUpdate``; Coinbase: the ``l2_data`` event, ids counting the product's updates from 1). ``fault``: the
    fault a session applies (:data:`DROP`, ...), "" for none."""

    symbol: str
    first_id: int
    last_id: int
    received_at: int
    data: bytes
    fault: str = ""


class _Symbol:
    """One symbol's events, how many the feed has emitted, and the REST book built from them on demand."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.events: list[DepthEvent] = []
        self.emitted = 0
        self.applied = 0
        self.snapshot: dict[str, Any] | None = None
        self.book = L2Book()
        self.last_id: int | None = None
        self.started = False


class DepthTape:
    """The depth events of a recording in receive order, with the feed's position in them and the REST books.

    ``drop_every`` N: every N-th event is not sent (REST still has it); ``swap_every`` N: every N-th event is sent
    after the one that follows it (an out-of-order delta); ``cross_every`` N: every N-th event also carries a bid at
    :data:`CROSSING_PRICE` (a crossed book; the true book never holds it); ``checksum_every`` N: every N-th
    event's checksum is wrong (Kraken). All count events over the whole tape. With ``apply_faults`` (Binance: one
    encoding for every connection) the tape applies them; without (Coinbase's per-connection ``sequence_num``,
    Kraken's per-subscription checksum) it tags each event (:attr:`DepthEvent.fault`) and the session applies it.
    """

    def __init__(
        self,
        events: Iterable[DepthEvent],
        snapshots: dict[str, dict[str, Any]] | None = None,
        *,
        drop_every: int = 0,
        swap_every: int = 0,
        cross_every: int = 0,
        checksum_every: int = 0,
        levels: LevelsOf = binance_levels,
        apply_faults: bool = True,
    ) -> None:
        """A tape of ``events`` (receive order) and the recorded snapshot of each symbol that has one
        (``{"lastUpdateId", "bids", "asks"}``); ``levels`` reads an event's levels."""
        self.events = list(events)
        self.position = 0
        self.drop_every = drop_every
        self.swap_every = swap_every
        self.cross_every = cross_every
        self.checksum_every = checksum_every
        self.levels = levels
        self.apply_faults = apply_faults
        self.dropped = 0
        self.swapped = 0
        self.crossed = 0
        self.corrupted = 0
        self._held: DepthEvent | None = None
        self._symbols: dict[str, _Symbol] = {}
        for event in self.events:
            self._symbol(event.symbol).events.append(event)
        for symbol, snapshot in (snapshots or {}).items():
            self._symbol(symbol).snapshot = snapshot

    def _symbol(self, symbol: str) -> _Symbol:
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = _Symbol(symbol)
        return state

    def __len__(self) -> int:
        """How many events the tape holds."""
        return len(self.events)

    def symbols(self) -> set[str]:
        """The symbols with depth events or a snapshot."""
        return set(self._symbols)

    @property
    def next_at(self) -> int:
        """The receive time (ms) of the next event the feed takes; a far future once the tape is played."""
        return self.events[self.position].received_at if self.position < len(self.events) else _NEVER

    def due(self, until: int = _NEVER) -> list[DepthEvent]:
        """Advance over every event received at or before ``until`` (ms); returns those to send, in sending order
        (the fault plan applied). The REST books include every event advanced over, sent or not."""
        out: list[DepthEvent] = []
        events, position = self.events, self.position
        while position < len(events) and events[position].received_at <= until:
            event = events[position]
            position += 1
            self._symbols[event.symbol].emitted += 1
            if not self.apply_faults:
                out.append(self._tagged(event, position))
                continue
            if self.cross_every and position % self.cross_every == 0:
                event = self._crossing(event)
            if self.drop_every and position % self.drop_every == 0:
                self.dropped += 1
                continue
            if self._held is not None:
                out.append(event)
                out.append(self._held)
                self._held = None
                continue
            if self.swap_every and position % self.swap_every == 0:
                self._held = event
                self.swapped += 1
                continue
            out.append(event)
        self.position = position
        if position >= len(events) and self._held is not None:  # nothing left to swap with: it goes out last
            out.append(self._held)
            self._held = None
        return out

    def _tagged(self, event: DepthEvent, position: int) -> DepthEvent:
        # The first fault due at this position, for the session to apply (counted here, over the whole tape).
        for every, tag in (
            (self.drop_every, DROP),
            (self.swap_every, SWAP),
            (self.cross_every, CROSS),
            (self.checksum_every, CHECKSUM),
        ):
            if every and position % every == 0:
                if tag == DROP:
                    self.dropped += 1
                elif tag == SWAP:
                    self.swapped += 1
                elif tag == CROSS:
                    self.crossed += 1
                else:
                    self.corrupted += 1
                return event._replace(fault=tag)
        return event

    def _crossing(self, event: DepthEvent) -> DepthEvent:
        # A Binance event with one more bid, priced above any ask: the client's book crosses (the true one does not).
        self.crossed += 1
        data = orjson.loads(event.data)
        data["b"] = [*data["b"], [CROSSING_PRICE, "1.00000000"]]
        return event._replace(data=orjson.dumps(data))

    def book(self, symbol: str) -> tuple[L2Book, int | None] | None:
        """The true book of ``symbol`` now (the recorded snapshot plus every event the feed advanced over, sent or
        not; faults never touch it) and the last id it holds; None for a symbol without depth. The book is the
        tape's own: read it, do not change it."""
        state = self._symbols.get(symbol)
        if state is None:
            return None
        book = state.book
        if not state.started:
            state.started = True
            if state.snapshot is not None:
                recorded = state.snapshot
                book.apply_snapshot(parse_levels(recorded["bids"], "bids"), parse_levels(recorded["asks"], "asks"))
                state.last_id = recorded["lastUpdateId"]
            else:
                logger.info(
                    f"simulator: the recording holds no REST snapshot of {symbol}: /api/v3/depth serves the book "
                    "built from every recorded delta so far, starting empty",
                    extra={"symbol": symbol},
                )
        levels = self.levels
        for event in state.events[state.applied : state.emitted]:
            if state.last_id is not None and event.last_id <= state.last_id:
                continue  # already in the recorded snapshot
            book.apply(*levels(event.data))
            state.last_id = event.last_id
        state.applied = max(state.applied, state.emitted)
        return book, state.last_id

    def snapshot(self, symbol: str, limit: int) -> dict[str, Any] | None:
        """``/api/v3/depth``'s answer for ``symbol`` now: ``{"lastUpdateId", "bids", "asks"}`` with the ``limit``
        best levels a side (None for a symbol without depth)."""
        found = self.book(symbol)
        if found is None:
            return None
        book, last_id = found
        state = self._symbols[symbol]
        if last_id is None:  # nothing emitted and no snapshot: the empty book just before the first event
            last_id = state.events[0].first_id - 1 if state.events else 0
        return {"lastUpdateId": last_id, **book.as_lists(limit)}


def read_depth(paths: Iterable[str | Path], rename: Callable[[str], str] | None = None) -> DepthTape | None:
    """The depth events and REST snapshots of recordings in the ``<receive ns> <frame>`` layout; None when they hold
    no ``@depth`` stream. A snapshot line belongs to the symbol of its file's depth events; only the first one of a
    symbol is used (a later file continues the same stream). ``rename`` spells the symbols as another exchange does
    (Kraken's book frames derived from Binance's events: ``BTCUSDT`` -> ``BTC/USDT``)."""
    events: list[DepthEvent] = []
    snapshots: dict[str, dict[str, Any]] = {}
    for path in paths:
        found: list[dict[str, Any]] = []
        symbol: str | None = None
        with open_binary(path) as handle:
            for line in handle:
                head, _, frame = line.partition(b" ")
                if not head.isdigit():
                    continue
                if frame.startswith(b'{"lastUpdateId"'):
                    found.append(orjson.loads(frame))
                    continue
                if b"@depth" not in frame[:60] or b'"depthUpdate"' not in frame:
                    continue
                data = orjson.loads(frame).get("data")
                if not isinstance(data, dict) or data.get("e") != "depthUpdate":
                    continue
                symbol = str(data["s"])
                events.append(DepthEvent(symbol, data["U"], data["u"], to_millis(int(head)), orjson.dumps(data)))
        if found and symbol is not None and symbol not in snapshots:
            snapshots[symbol] = found[0]
    if not events:
        return None
    events.sort(key=lambda event: event.received_at)  # stable: files of one stream keep their order
    if rename is not None:
        events = [event._replace(symbol=rename(event.symbol)) for event in events]
        snapshots = {rename(symbol): snapshot for symbol, snapshot in snapshots.items()}
    return DepthTape(events, snapshots)


_COINBASE_SIDES = {"bid": 0, "offer": 1}


def coinbase_levels(data: bytes) -> tuple[list[Level], list[Level]]:
    """A Coinbase ``l2_data`` event's ``updates`` as (bids, asks)."""
    sides: tuple[list[list[str]], list[list[str]]] = ([], [])
    for update in orjson.loads(data)["updates"]:
        sides[_COINBASE_SIDES[update["side"]]].append([update["price_level"], update["new_quantity"]])
    return parse_levels(sides[0], "bids"), parse_levels(sides[1], "asks")


def read_coinbase_l2(paths: Iterable[str | Path]) -> DepthTape | None:
    """The Advanced Trade ``level2`` events of Coinbase recordings (cryptofeed's ``{"t": "recv", "ts", "data"}``
    lines, or ``manage.py record``'s ``<recv ns> <frame>`` lines); None when they hold none. Each product's first
    ``snapshot`` event is its recorded book (id 0); its ``update`` events follow, numbered 1, 2, ... per product,
    in received order. A later snapshot of a product (a resubscription) adds nothing: the updates already make that
    book."""
    events: list[DepthEvent] = []
    snapshots: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for path in paths:
        with open_binary(path) as handle:
            for line in handle:
                if b"l2_data" not in line:
                    continue
                head, _, rest = line.partition(b" ")
                if head.isdigit():  # manage.py record's ``<recv ns> <frame>`` layout
                    received, frame = to_millis(int(head)), orjson.loads(rest)
                else:  # cryptofeed's ``{"t": "recv", "ts", "data"}`` lines
                    entry = orjson.loads(line)
                    if entry.get("t") != "recv":
                        continue
                    received, frame = to_millis(entry["ts"]), orjson.loads(entry["data"])
                if frame.get("channel") != "l2_data":
                    continue
                for event in frame["events"]:
                    product = str(event["product_id"])
                    if event["type"] == "snapshot":
                        if product not in snapshots:
                            bids, asks = coinbase_levels(orjson.dumps(event))
                            snapshots[product] = {
                                "lastUpdateId": 0,
                                "bids": [[format(p, "f"), format(q, "f")] for p, q in bids],
                                "asks": [[format(p, "f"), format(q, "f")] for p, q in asks],
                            }
                            counts[product] = 0
                        continue
                    if product not in snapshots:
                        continue  # updates before any snapshot of the product cannot be placed on a book
                    counts[product] += 1
                    number = counts[product]
                    events.append(DepthEvent(product, number, number, received, orjson.dumps(event)))
    if not events and not snapshots:
        return None
    events.sort(key=lambda event: event.received_at)
    return DepthTape(events, snapshots, levels=coinbase_levels, apply_faults=False)
