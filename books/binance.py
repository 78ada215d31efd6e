"""Binance spot diff-depth (``<symbol>@depth@100ms``) plus a REST snapshot, following Binance's documented procedure.

1. Buffer the stream's events and fetch ``GET /api/v3/depth`` (:attr:`BookSync.snapshot_needed`).
2. Drop the buffered events with ``u`` <= the snapshot's ``lastUpdateId``; if the first one left starts after
   ``lastUpdateId`` + 1 the snapshot is older than the stream: fetch another.
3. The first event applied has ``U`` <= ``lastUpdateId`` + 1 <= ``u``; every later one has ``U`` = the previous
   ``u`` + 1. Anything else (a dropped, repeated or reordered event) is a break: back to step 1, the breaking
   event being the first one buffered.

Quantities are absolute; zero removes the level (removing one the book does not hold is no error).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from books.book import BookDataError, Level, parse_levels
from books.sync import BAD_DATA, SEQUENCE_GAP, STALE_SNAPSHOT, BookSync

#: an event's bids and asks, parsed
Levels = tuple[list[Level], list[Level]]
#: events kept while waiting for a snapshot; past it the oldest go (a snapshot older than what is left is refused)
MAX_BUFFER = 10_000


def _int_field(event: Mapping[str, Any], key: str) -> int:
    value = event.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BookDataError(f"{key} must be an integer, got {str(value)[:40]!r}")
    return value


class BinanceBookSync(BookSync):
    """One Binance symbol's book from ``depthUpdate`` events and ``/api/v3/depth`` snapshots."""

    exchange = "binance"

    def __init__(self, symbol: str, max_buffer: int = MAX_BUFFER) -> None:
        """A book waiting for its snapshot, buffering up to ``max_buffer`` events meanwhile."""
        super().__init__(symbol)
        # (event, its levels when the caller already parsed them): parsing is most of an event's cost, done once
        self._buffer: deque[tuple[Mapping[str, Any], Levels | None]] = deque(maxlen=max_buffer)
        #: ``u`` of the last event applied (the snapshot's ``lastUpdateId`` before the first; -1 before any snapshot)
        self.last_update_id = -1
        # whether an event was applied since the snapshot: the first must straddle lastUpdateId + 1, later ones chain
        self._bridged = False
        #: the lowest bid and highest ask of the last snapshot applied: beyond them the book holds only the levels
        #: events touched since (a snapshot of 1,000 levels spans about 0.3 % of BTCUSDT's price, not the 1 % band)
        self.snapshot_bounds: tuple[Decimal | None, Decimal | None] = (None, None)

    @property
    def buffered(self) -> int:
        """How many events wait for the next snapshot."""
        return len(self._buffer)

    def on_delta(self, event: Mapping[str, Any], levels: Levels | None = None) -> None:
        """Feed one ``depthUpdate`` event (the combined stream's ``data``): buffered until synced, then applied.

        ``levels``: the event's ``b`` and ``a`` already parsed by :func:`~books.book.parse_levels` (a caller that
        validated them, as the ingest feed does), so they are not parsed twice; None parses them here.
        """
        if self.snapshot_needed:
            self._buffer.append((event, levels))
        else:
            self._apply_event(event, levels)

    def on_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        """Feed a REST snapshot ``{"lastUpdateId", "bids", "asks"}``: the book is valid if the buffer bridges it.

        A snapshot nobody asked for (the book is in sync) is ignored: it may be older than the events applied.
        """
        if not self.snapshot_needed:
            return
        try:
            last_id = _int_field(snapshot, "lastUpdateId")
            bids = parse_levels(snapshot.get("bids") or (), "snapshot bids")
            asks = parse_levels(snapshot.get("asks") or (), "snapshot asks")
        except BookDataError as exc:
            self._break(BAD_DATA, f"snapshot: {exc}")
            return
        pending = []
        for entry in self._buffer:
            try:
                final = _int_field(entry[0], "u")
            except BookDataError:
                final = None  # kept: applying it breaks the sync, which is what a malformed event must do
            if final is None or final > last_id:
                pending.append(entry)
        first = pending[0][0].get("U") if pending else None
        if isinstance(first, int) and first > last_id + 1:
            self._break(STALE_SNAPSHOT, f"lastUpdateId {last_id} is older than the first buffered U {first}")
            return
        self._buffer.clear()
        self.book.apply_snapshot(bids, asks)
        self.snapshot_bounds = (min(p for p, _ in bids) if bids else None, max(p for p, _ in asks) if asks else None)
        self.last_update_id = last_id
        self._bridged = False
        if not self._check_crossed():
            return
        for index, (event, levels) in enumerate(pending):
            if not self._apply_event(event, levels):
                self._buffer.extend(pending[index + 1 :])
                return
        self._synced()

    def _apply_event(self, event: Mapping[str, Any], levels: Levels | None = None) -> bool:
        """Check one event's ids against the last applied, apply it; False (and a break) when it does not fit."""
        try:
            first, final = _int_field(event, "U"), _int_field(event, "u")
            if levels is None:
                levels = parse_levels(event.get("b") or (), "b"), parse_levels(event.get("a") or (), "a")
        except BookDataError as exc:
            self._break(BAD_DATA, f"depthUpdate: {exc}")
            return False
        last = self.last_update_id
        if not self._bridged:
            if final <= last:
                return True  # older than the snapshot (it was in flight while the snapshot was fetched): dropped
            if not first <= last + 1 <= final:
                self._break(
                    SEQUENCE_GAP, f"first event U={first} u={final} does not straddle lastUpdateId+1={last + 1}"
                )
                self._buffer.append((event, levels))
                return False
        elif first != last + 1:
            self._break(SEQUENCE_GAP, f"U={first} does not follow u={last}")
            self._buffer.append((event, levels))
            return False
        event_ms = event.get("E")
        bids, asks = levels
        self.book.apply(bids, asks, event_ms if isinstance(event_ms, int) else None)
        self.last_update_id = final
        self._bridged = True
        return self._check_crossed()
