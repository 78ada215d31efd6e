"""Binance depth replay: the recorded ``@depth@100ms`` events of a recording, and the REST ``/api/v3/depth``
snapshot consistent with what the market has sent so far (docs/BOOKS.md, "The simulator's depth").

The feed takes the events in recorded order, interleaved with the trades by receive time (:meth:`DepthTape.due`).
REST serves, per symbol, the recording's own REST snapshot plus every event after it up to the moment asked, or,
when the recording holds none, the book built from every event so far, starting empty (said once in the log).
Events the fault plan keeps off the WebSocket (``--depth-drop-every``) are in the REST book all the same, as a
real exchange's book holds the updates a client missed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from books.book import L2Book, parse_levels
from simulator.replay import open_binary, to_millis

logger = logging.getLogger(__name__)

#: Binance's REST weight of ``/api/v3/depth`` by ``limit`` (the first bound at or above it)
DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))
#: the weight of ``/api/v3/historicalTrades``, the request the simulator's ``--rest-rate`` counts
TRADES_WEIGHT = 25
_NEVER = 1 << 62


def depth_weight(limit: int) -> int:
    """Binance's request weight of a depth snapshot of ``limit`` levels (1..5000)."""
    return next(weight for bound, weight in DEPTH_WEIGHTS if limit <= bound)


class DepthEvent(NamedTuple):
    """One recorded ``depthUpdate`` event; ``data`` is the event object exactly as the stream carries it."""

    symbol: str
    first_id: int
    last_id: int
    received_at: int
    data: bytes


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
    after the one that follows it (an out-of-order delta). Both count events over the whole tape.
    """

    def __init__(
        self,
        events: Iterable[DepthEvent],
        snapshots: dict[str, dict[str, Any]] | None = None,
        *,
        drop_every: int = 0,
        swap_every: int = 0,
    ) -> None:
        """A tape of ``events`` (receive order) and the recorded REST snapshot of each symbol that has one."""
        self.events = list(events)
        self.position = 0
        self.drop_every = drop_every
        self.swap_every = swap_every
        self.dropped = 0
        self.swapped = 0
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

    def snapshot(self, symbol: str, limit: int) -> dict[str, Any] | None:
        """``/api/v3/depth``'s answer for ``symbol`` now: ``{"lastUpdateId", "bids", "asks"}`` with the ``limit``
        best levels a side (None for a symbol without depth)."""
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
        for event in state.events[state.applied : state.emitted]:
            if state.last_id is not None and event.last_id <= state.last_id:
                continue  # already in the recorded snapshot
            data = orjson.loads(event.data)
            book.apply(parse_levels(data["b"], "b"), parse_levels(data["a"], "a"))
            state.last_id = event.last_id
        state.applied = max(state.applied, state.emitted)
        last_id = state.last_id
        if last_id is None:  # nothing emitted and no snapshot: the empty book just before the first event
            last_id = state.events[0].first_id - 1 if state.events else 0
        return {"lastUpdateId": last_id, **book.as_lists(limit)}


def read_depth(paths: Iterable[str | Path]) -> DepthTape | None:
    """The depth events and REST snapshots of recordings in the ``<receive ns> <frame>`` layout; None when they hold
    no ``@depth`` stream. A snapshot line belongs to the symbol of its file's depth events; only the first one of a
    symbol is used (a later file continues the same stream)."""
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
    return DepthTape(events, snapshots)
