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
