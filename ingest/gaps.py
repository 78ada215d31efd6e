"""Trade-id continuity per symbol: consecutive ids mean nothing was missed; a jump is a gap to backfill."""

from __future__ import annotations

from dataclasses import dataclass

NEXT = 0
DUPLICATE = 1
GAP = 2


@dataclass(frozen=True, slots=True)
class Gap:
    """Ids ``first``..``last`` (inclusive) of ``symbol`` were not received.

    ``after_time`` is the trade time (epoch ms) of the last trade seen before the gap (id ``first - 1``), when
    known: an exchange whose REST pages by time, not by id (Kraken), starts there.
    """

    symbol: str
    first: int
    last: int
    after_time: int | None = None

    @property
    def size(self) -> int:
        """How many trades are missing."""
        return self.last - self.first + 1


class TradeIdContinuity:
    """The last id seen per symbol (and its trade time); it outlives connections, so a reconnect is checked
    against the drop.

    ``check`` classifies an incoming id: the next one, a duplicate (at or below the last: a repeat from a
    snapshot, a reconnect or a backfill overlap) or a gap (the missing range comes back in ``gap``).
    """

    __slots__ = ("gap", "last", "times")

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.times: dict[str, int] = {}
        self.gap: Gap | None = None

    def check(self, symbol: str, trade_id: int, trade_time: int | None = None) -> int:
        """``NEXT`` (recorded), ``DUPLICATE`` or ``GAP`` (``self.gap`` holds the range; nothing recorded yet: the
        caller publishes what it can backfill through :meth:`advance`, then advances to ``trade_id``)."""
        last = self.last.get(symbol)
        if last is None or trade_id == last + 1:
            self.last[symbol] = trade_id
            if trade_time is not None:
                self.times[symbol] = trade_time
            return NEXT
        if trade_id <= last:
            return DUPLICATE
        self.gap = Gap(symbol, last + 1, trade_id - 1, self.times.get(symbol))
        return GAP

    def advance(self, symbol: str, trade_id: int, trade_time: int | None = None) -> bool:
        """Record a backfilled id; False when it is not newer than the last one (drop it as a duplicate)."""
        last = self.last.get(symbol)
        if last is not None and trade_id <= last:
            return False
        self.last[symbol] = trade_id
        if trade_time is not None:
            self.times[symbol] = trade_time
        else:
            self.times.pop(symbol, None)  # the time kept belonged to an older id
        return True

    def seed(self, symbol: str, trade_id: int, trade_time: int | None) -> None:
        """Start ``symbol`` at ``trade_id`` (a resume from what Kafka holds)."""
        self.last[symbol] = trade_id
        if trade_time is not None:
            self.times[symbol] = trade_time


class RecentIdContinuity(TradeIdContinuity):
    """The id check of an exchange whose ids reveal no gap (Bybit: string ids, not consecutive per symbol).

    A trade is a repeat when its id is among the last ``memory`` ids of its symbol, or when it is older than every
    trade still remembered (its id may have been forgotten); anything else is ``NEXT``. It never reports a
    ``GAP``: what a drop missed is fetched back by the reconnect catch-up (:meth:`ingest.runner.FrameProcessor.
    catch_up`). ``last`` and ``times`` hold the newest id and trade time seen per symbol, as the base's do.
    """

    __slots__ = ("floor", "memory", "recent")

    def __init__(self, memory: int = 20_000) -> None:
        super().__init__()
        self.memory = memory
        self.recent: dict[str, dict[int, int | None]] = {}  # per symbol: id -> trade time, oldest first
        self.floor: dict[str, int] = {}  # per symbol: the newest trade time forgotten (older ones are repeats)

    def _remember(self, symbol: str, trade_id: int, trade_time: int | None) -> None:
        ids = self.recent.setdefault(symbol, {})
        ids[trade_id] = trade_time
        if len(ids) > self.memory:
            forgotten = ids.pop(next(iter(ids)))
            if forgotten is not None and forgotten > self.floor.get(symbol, -1):
                self.floor[symbol] = forgotten
        # The newest trade seen, not the last remembered: a catch-up's older trades must not move a later catch-up's
        # starting point back.
        if trade_time is None or trade_time >= self.times.get(symbol, -1):
            self.last[symbol] = trade_id
            if trade_time is not None:
                self.times[symbol] = trade_time

    def check(self, symbol: str, trade_id: int, trade_time: int | None = None) -> int:
        """``NEXT`` (remembered) or ``DUPLICATE``; never ``GAP``."""
        ids = self.recent.get(symbol)
        if ids is not None and trade_id in ids:
            return DUPLICATE
        floor = self.floor.get(symbol)
        if floor is not None and trade_time is not None and trade_time < floor:
            return DUPLICATE
        self._remember(symbol, trade_id, trade_time)
        return NEXT

    def advance(self, symbol: str, trade_id: int, trade_time: int | None = None) -> bool:
        """Record a backfilled trade; False when it is a repeat."""
        return self.check(symbol, trade_id, trade_time) == NEXT

    def seed(self, symbol: str, trade_id: int, trade_time: int | None) -> None:
        """Start ``symbol`` after ``trade_id`` (a resume from what Kafka holds): trades older than it are repeats."""
        self._remember(symbol, trade_id, trade_time)
        if trade_time is not None:
            self.floor[symbol] = trade_time
