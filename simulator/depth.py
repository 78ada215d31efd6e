"""Depth replay: the recorded book events of a recording, and the book consistent with what the market has sent so
far (docs/BOOKS.md, "The simulator's depth"). Binance: ``@depth@100ms`` events and REST ``/api/v3/depth``;
Coinbase: the recorded Advanced Trade ``level2`` updates (:func:`read_coinbase_l2`), the snapshot a subscription
gets; Kraken: ``book`` frames derived from the Binance events (:mod:`simulator.kraken`).

The feed takes the events in recorded order, interleaved with the trades by receive time (:meth:`DepthTape.due`).
REST serves, per symbol, the recording's own REST snapshot plus every event after it up to the moment asked, or,
when the recording holds none, the book built from every event so far, starting empty (said once in the log).
Events the fault plan keeps off the WebSocket (``--depth-drop-every``) are in the REST book all the same, as a
real exchange's book holds the updates a client missed.

Binance tapes also follow the trades on the present clock (:meth:`DepthTape.align`, ``--present``) and loop with
them (:meth:`DepthTape.next_pass`, ``--loop``): each pass restarts the recorded book (the REST snapshot too) and moves
the update ids forward past a hole of :data:`LOOP_ID_GAP`, so every client resyncs instead of applying the
recording's first events to the book its last ones made.
"""

from __future__ import annotations

import logging
from collections import deque
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

#: how many update ids a loop pass leaves out between the previous pass's last ``u`` and its first ``U``: the
#: recording's first book does not follow from its last one, so the stream must break and every client resync
LOOP_ID_GAP = 1

#: an event's ``data`` -> (bids, asks) levels
LevelsOf = Callable[[bytes], tuple[list[Level], list[Level]]]


def binance_levels(data: bytes) -> tuple[list[Level], list[Level]]:
    """A Binance ``depthUpdate``'s ``b`` and ``a``."""
    event = orjson.loads(data)
    return parse_levels(event["b"], "b"), parse_levels(event["a"], "a")


def depth_weight(limit: int) -> int:
    """Binance's request weight of a depth snapshot of ``limit`` levels (1..5000)."""
    return next(weight for bound, weight in DEPTH_WEIGHTS if limit <= bound)


def binance_restamp(event: DepthEvent, id_shift: int, time_shift: int) -> DepthEvent:
    """A Binance event moved forward: ``U`` and ``u`` by ``id_shift``, ``E`` and its receive time by ``time_shift``
    (ms)."""
    data = orjson.loads(event.data)
    data["U"] += id_shift
    data["u"] += id_shift
    data["E"] += time_shift
    return DepthEvent(
        event.symbol,
        event.first_id + id_shift,
        event.last_id + id_shift,
        event.received_at + time_shift,
        orjson.dumps(data),
        event.fault,
    )


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
        self.told = False  # the log said the recording holds no snapshot of it
        #: what each loop pass adds to the recorded update ids (0 on the first pass)
        self.id_shift = 0
        #: the recorded update ids' range, ``u`` of the last event - ``U`` of the first + 1 (the snapshot's included)
        self.id_span = 0

    def restart(self) -> None:
        """A loop pass: nothing of the recording emitted yet, the REST book back to the recorded snapshot."""
        self.emitted = self.applied = 0
        self.book = L2Book()
        self.last_id = None
        self.started = False


class DepthTape:
    """The depth events of a recording in receive order, with the feed's position in them and the REST books.

    ``drop_every`` N: every N-th event is not sent (REST still has it); ``swap_every`` N: every N-th event is sent
    after the one that follows it (an out-of-order delta); ``cross_every`` N: every N-th event also carries a bid at
    :data:`CROSSING_PRICE` (a crossed book; the true book never holds it); ``checksum_every`` N: every N-th
    event's checksum is wrong (Kraken). All count events over the whole tape. With ``apply_faults`` (Binance: one
    encoding for every connection) the tape applies them; without (Coinbase's per-connection ``sequence_num``,
    Kraken's per-subscription checksum) it tags each event (:attr:`DepthEvent.fault`) and the session applies it.

    ``restamp`` moves an event's ids and times (Binance: :func:`binance_restamp`); a tape with one can follow trades
    on the present clock (:meth:`present`, :meth:`align`) and loop (:meth:`next_pass`).
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
        restamp: Callable[[DepthEvent, int, int], DepthEvent] | None = binance_restamp,
    ) -> None:
        """A tape of ``events`` (receive order) and the recorded snapshot of each symbol that has one
        (``{"lastUpdateId", "bids", "asks"}``); ``levels`` reads an event's levels."""
        self.events = list(events)
        self.restamp = restamp
        #: ms added to every recorded time (``--present``); None until the first trade of a symbol of the tape
        #: says by how much its trades moved (:meth:`align`): no event goes out before
        self.offset: int | None = 0
        #: the current loop pass's shift of the recorded times (ms), and the passes the trades began since
        self.time_shift = 0
        self.passes = 0
        self._pending: deque[int] = deque()
        self._following: frozenset[str] | None = None
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
        for state in self._symbols.values():
            ids = [event.first_id for event in state.events] + [event.last_id for event in state.events]
            if state.snapshot is not None:
                ids.append(state.snapshot["lastUpdateId"])
            state.id_span = max(ids) - min(ids) + 1 if ids else 0

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

    def present(self) -> None:
        """Follow the trades on the present clock: no event goes out until :meth:`align` says how far they moved."""
        if self.restamp is None:
            raise ValueError("this tape's events cannot be moved to the present")
        self.offset = None

    def align(self, symbol: str, delta: int) -> None:
        """The trades of ``symbol`` moved by ``delta`` ms (their first one drawn): the tape's events move as far,
        if it holds ``symbol`` and has not moved yet (the tape's symbols come from one recording, one timeline)."""
        if self.offset is None and symbol in self._symbols:
            self.offset = delta

    def next_pass(self, symbols: Iterable[str], time_shift: int) -> None:
        """A looping trade stream of ``symbols`` began a pass, its recorded times moved by ``time_shift`` ms: once
        the tape has played its events, it plays them again shifted as far (the first stream holding a symbol of
        the tape is the one followed)."""
        if self.restamp is None or not self.events:
            return
        names = frozenset(symbols)
        if self._following is None and names & self._symbols.keys():
            self._following = names
        if names == self._following:
            self._pending.append(time_shift)

    @property
    def next_at(self) -> int:
        """The time (ms, on the trades' clock) of the next event the feed takes; a far future once the tape is
        played (until the trades loop)."""
        offset = self.offset
        if offset is None:
            return _NEVER
        if self.position < len(self.events):
            return self.events[self.position].received_at + offset + self.time_shift
        if self._pending:
            return self.events[0].received_at + offset + self._pending[0]
        return _NEVER

    def due(self, until: int = _NEVER) -> list[DepthEvent]:
        """Advance over every event received at or before ``until`` (ms, on the trades' clock), into the next loop
        pass when one began; returns those to send, in sending order (the fault plan applied). The REST books
        include every event advanced over, sent or not."""
        out: list[DepthEvent] = []
        if self.offset is None:
            return out
        while True:
            self._advance(until - self.offset - self.time_shift, out)
            if self.position < len(self.events) or not self._pending:
                return out
            if self.events[0].received_at + self.offset + self._pending[0] > until:
                return out
            self._restart(self._pending.popleft())

    def _restart(self, time_shift: int) -> None:
        # A loop pass: the recording from its start, ids forward past a hole (clients resync), REST's book restarted.
        self.position = 0
        self.time_shift = time_shift
        self.passes += 1
        for state in self._symbols.values():
            state.id_shift += state.id_span + LOOP_ID_GAP
            state.restart()
        logger.info(
            "simulator: the depth recording loops: its book restarts and its update ids jump forward (clients resync)",
            extra={"pass": self.passes + 1, "ids": {s: state.id_shift for s, state in self._symbols.items()}},
        )

    def _advance(self, until: int, out: list[DepthEvent]) -> None:
        # Every event received at or before ``until`` (ms, recorded time), moved to the trades' clock.
        events, position = self.events, self.position
        shift = (self.offset or 0) + self.time_shift
        restamp = self.restamp if shift or self.passes else None
        while position < len(events) and events[position].received_at <= until:
            event = events[position]
            position += 1
            state = self._symbols[event.symbol]
            state.emitted += 1
            if restamp is not None:
                event = restamp(event, state.id_shift, shift)
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
        """The true book of ``symbol`` now (the recorded snapshot plus every event the feed advanced over in this
        loop pass, sent or not; faults never touch it) and the last id it holds, as sent; None for a symbol without
        depth. The book is the tape's own: read it, do not change it."""
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
            elif not state.told:
                state.told = True
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
        return book, None if state.last_id is None else state.last_id + state.id_shift

    def snapshot(self, symbol: str, limit: int) -> dict[str, Any] | None:
        """``/api/v3/depth``'s answer for ``symbol`` now: ``{"lastUpdateId", "bids", "asks"}`` with the ``limit``
        best levels a side (None for a symbol without depth)."""
        found = self.book(symbol)
        if found is None:
            return None
        book, last_id = found
        state = self._symbols[symbol]
        if last_id is None:  # nothing emitted and no snapshot: the empty book just before the first event
            last_id = state.events[0].first_id - 1 + state.id_shift if state.events else 0
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
    return DepthTape(events, snapshots, levels=coinbase_levels, apply_faults=False, restamp=None)
