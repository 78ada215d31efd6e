"""Hand a stored batch to Celery: per (symbol, batch window) tasks, never per trade.

``consume_trades`` calls :func:`dispatch_batch` after its transaction committed, so every task sees the rows it
is about. Each window gets one ``update_candles`` and one ``detect_whales``.

``refresh_stats`` recomputes the whole 24-hour row from stored data, so refreshes of one symbol are coalesced
with two Redis ``SET NX`` keys of ``STATS_COALESCE_SECONDS`` TTL: the first window in a TTL period sends a
refresh now (leading edge); the next one sends ONE refresh delayed by the TTL (trailing edge), which covers every
window of that period; any further window in the period sends nothing. A symbol then gets at most two refreshes
per period however fast its batches arrive, and its row is never staler than about one TTL. The beat job
``refresh_all_stats`` (every 30 s) is the backstop. When Redis is unreachable the refresh is sent anyway: an extra
idempotent task beats a stale row.
"""

from __future__ import annotations

import logging

from analytics import tasks
from analytics.coalesce import claim_stats_refresh
from analytics.windows import SymbolWindow

logger = logging.getLogger(__name__)


def dispatch_batch(windows: list[SymbolWindow]) -> int:
    """Queue the analytics tasks for a committed batch; returns how many tasks were sent."""
    sent = 0
    # One producer (and broker connection) for the whole batch: taking one from the pool for each task cost about a
    # third of every publish, and a batch of many markets sends two or three tasks per market.
    with tasks.update_candles.app.producer_or_acquire() as producer:
        for w in windows:
            if w.count <= 0:
                continue
            tasks.update_candles.apply_async((w.exchange, w.symbol, w.start_ms, w.end_ms), producer=producer)
            tasks.detect_whales.apply_async((w.exchange, w.symbol, w.start_ms, w.end_ms), producer=producer)
            sent += 2
            delay = claim_stats_refresh(w.exchange, w.symbol)
            if delay is not None:
                tasks.refresh_stats.apply_async((w.exchange, w.symbol), countdown=delay or None, producer=producer)
                sent += 1
    logger.debug("batch dispatched", extra={"windows": len(windows), "tasks": sent})
    return sent
