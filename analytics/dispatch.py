"""Hand a stored batch to Celery: per (symbol, batch window) tasks, never per trade.

``consume_trades`` calls :func:`dispatch_batch` after its transaction committed, so every task sees the rows it
is about. Each window gets one ``update_candles`` and one ``detect_whales``; ``refresh_stats`` is coalesced per
symbol with a Redis ``SET NX`` key of short TTL (``STATS_COALESCE_SECONDS``): while a refresh for the symbol is
queued or recently sent, further windows skip it. That is safe because ``refresh_stats`` recomputes the whole
24-hour row from stored data, and the beat job ``refresh_all_stats`` (every 30 s) catches any window that was
skipped right before the last refresh ran.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

STATS_LOCK_PREFIX = "analytics:stats-pending:"


@dataclass(frozen=True)
class SymbolWindow:
    """The trades of one symbol in one stored batch: traded_at range [start_ms, end_ms] (epoch ms)."""

    exchange: str
    symbol: str
    start_ms: int
    end_ms: int
    count: int


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis[Any]:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def claim_stats_refresh(exchange: str, symbol: str, ttl_seconds: float | None = None) -> bool:
    """True when no stats refresh for the symbol was sent within the TTL (and the slot is now taken).

    When Redis is unreachable, the refresh is sent anyway: an extra idempotent task beats a stale row.
    """
    ttl = settings.STATS_COALESCE_SECONDS if ttl_seconds is None else ttl_seconds
    if ttl <= 0:
        return True
    key = f"{STATS_LOCK_PREFIX}{exchange}:{symbol}"
    try:
        return bool(_redis(settings.REDIS_URL).set(key, b"1", nx=True, px=max(1, int(ttl * 1000))))
    except redis.RedisError:
        logger.warning("stats coalescing unavailable", exc_info=True, extra={"exchange": exchange, "symbol": symbol})
        return True


def dispatch_batch(windows: list[SymbolWindow]) -> int:
    """Queue the analytics tasks for a committed batch; returns how many tasks were sent."""
    from analytics import tasks

    sent = 0
    for w in windows:
        if w.count <= 0:
            continue
        tasks.update_candles.apply_async((w.exchange, w.symbol, w.start_ms, w.end_ms))
        tasks.detect_whales.apply_async((w.exchange, w.symbol, w.start_ms, w.end_ms))
        sent += 2
        if claim_stats_refresh(w.exchange, w.symbol):
            tasks.refresh_stats.apply_async((w.exchange, w.symbol))
            sent += 1
    logger.debug("batch dispatched", extra={"windows": len(windows), "tasks": sent})
    return sent
