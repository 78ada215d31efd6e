"""Pushes to the dashboard through the Redis channel layer: the one place sync code calls ``group_send``.

Callers push one message per batch and group (never per trade); :class:`Throttle` keeps each group to a few
messages per second. Consumers receive ``{"type": "push", "payload": ...}`` and forward the payload.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from analytics.groups import market_group
from analytics.payloads import Push, TradeItem, trade_item_from_record, trades_push
from ingest.records import TradeRecord

logger = logging.getLogger(__name__)

TAPE_MAX_TRADES = 50


def publish(group: str, payload: Push) -> bool:
    """Send one payload to one group; returns False (and logs) when the channel layer is unavailable.

    A live push is best effort: the data is already durable in PostgreSQL, so a Redis hiccup must not fail
    the caller's batch.
    """
    return publish_many([(group, payload)]) == 1


def publish_many(messages: Iterable[tuple[str, Push]]) -> int:
    """Send several (group, payload) pairs in one event-loop round trip; returns how many were sent."""
    items = list(messages)
    if not items:
        return 0
    layer = get_channel_layer()
    if layer is None:
        return 0

    async def _send() -> int:
        sent = 0
        for group, payload in items:
            await layer.group_send(group, {"type": "push", "payload": payload})
            sent += 1
        return sent

    try:
        return int(async_to_sync(_send)())
    except Exception:
        logger.warning("channel layer push failed", exc_info=True, extra={"groups": [g for g, _ in items]})
        return 0


class Throttle:
    """At most one push per ``interval`` seconds per key; thread-safe. ``ready(key)`` claims the slot."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def ready(self, key: str, now: float | None = None) -> bool:
        """True (and the slot is taken) when ``key`` has not pushed within the interval."""
        t = time.monotonic() if now is None else now
        with self._lock:
            if t - self._last.get(key, float("-inf")) >= self.interval:
                self._last[key] = t
                return True
            return False


class TapePublisher:
    """The live trade tape: at most 50 newest trades per push, at most 5 pushes per second per symbol, coalesced.

    Trades that arrive while a symbol is throttled wait (the newest 50 only) and go out with the next allowed push,
    so the last trades of a burst always arrive.
    """

    def __init__(
        self,
        interval: float = 0.2,
        send: Callable[[Iterable[tuple[str, Push]]], int] | None = None,
    ) -> None:
        self._throttle = Throttle(interval)
        # Records, not items: the tape keeps the newest 50 of a burst, so only those are turned into items, at flush.
        self._pending: dict[tuple[str, str], deque[TradeRecord]] = {}
        self._send = send or publish_many

    def add(self, records: Sequence[TradeRecord]) -> None:
        """Queue trades (in the order given, oldest first) for their symbols' next push."""
        for r in records:
            key = (r.exchange, r.symbol)
            queue = self._pending.get(key)
            if queue is None:
                queue = self._pending[key] = deque(maxlen=TAPE_MAX_TRADES)
            queue.append(r)

    def flush(self, now: float | None = None) -> int:
        """Push every symbol whose throttle slot is free; returns the number of pushes sent."""
        messages: list[tuple[str, Push]] = []
        for (exchange, symbol), queue in list(self._pending.items()):
            if not self._throttle.ready(f"{exchange}:{symbol}", now):
                continue
            trades = sorted(queue, key=lambda r: (r.trade_time, r.trade_id))
            del self._pending[(exchange, symbol)]
            items = [item for item in map(_tape_item, trades) if item is not None]
            if items:
                messages.append((market_group(exchange, symbol), trades_push(exchange, symbol, items)))
        return self._send(messages) if messages else 0

    @property
    def pending(self) -> int:
        """Symbols with trades waiting for their slot."""
        return len(self._pending)


def _tape_item(record: TradeRecord) -> TradeItem | None:
    """The tape's item for ``record``, or None (logged) for one whose decimals no stored column could hold.

    The consumer passes only stored trades; this keeps the tape's promise never to raise for any record it is given.
    """
    try:
        return trade_item_from_record(record)
    except ArithmeticError as exc:  # decimal.InvalidOperation: quantizing needs more digits than a column has
        logger.warning(
            "live tape: a trade skipped",
            extra={
                "exchange": record.exchange,
                "symbol": record.symbol,
                "trade_id": record.trade_id,
                "error": repr(exc),
            },
        )
        return None
