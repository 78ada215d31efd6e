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
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

STATS_LOCK_PREFIX = "analytics:stats-pending:"
CANDLES_PUSH_PREFIX = "analytics:candles-push:"


@dataclass(frozen=True)
class SymbolWindow:
    """The trades of one symbol in one stored batch: traded_at range [start_ms, end_ms] (epoch ms)."""

    exchange: str
    symbol: str
    start_ms: int
    end_ms: int
    count: int


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def claim_stats_refresh(exchange: str, symbol: str, ttl_seconds: float | None = None) -> float | None:
    """When to send this window's stats refresh: ``0`` now, a delay in seconds, or ``None`` (already covered)."""
    ttl = settings.STATS_COALESCE_SECONDS if ttl_seconds is None else ttl_seconds
    return claim_slot(STATS_LOCK_PREFIX, exchange, symbol, ttl)


def claim_slot(prefix: str, exchange: str, symbol: str, ttl: float) -> float | None:
    """Leading/trailing coalescing per symbol across processes: ``0`` act now, ``ttl`` act once after the period
    (a trailing action covering the rest of it), ``None`` nothing to do (both already claimed)."""
    if ttl <= 0:
        return 0.0
    key = f"{prefix}{exchange}:{symbol}"
    ttl_ms = max(1, int(ttl * 1000))
    try:
        client = _redis(settings.REDIS_URL)
        if client.set(key, b"1", nx=True, px=ttl_ms):
            return 0.0
        if client.set(f"{key}:trailing", b"1", nx=True, px=ttl_ms):
            return float(ttl)
        return None
    except redis.RedisError:
        logger.warning("coalescing unavailable", exc_info=True, extra={"key": key})
        return 0.0


def dispatch_batch(windows: list[SymbolWindow]) -> int:
    """Queue the analytics tasks for a committed batch; returns how many tasks were sent."""
    # Late: the tasks import the models, and SymbolWindow must stay importable before the apps are ready.
    from analytics import tasks

    sent = 0
    for w in windows:
        if w.count <= 0:
            continue
        tasks.update_candles.apply_async((w.exchange, w.symbol, w.start_ms, w.end_ms))
        tasks.detect_whales.apply_async((w.exchange, w.symbol, w.start_ms, w.end_ms))
        sent += 2
        delay = claim_stats_refresh(w.exchange, w.symbol)
        if delay is not None:
            tasks.refresh_stats.apply_async((w.exchange, w.symbol), countdown=delay or None)
            sent += 1
    logger.debug("batch dispatched", extra={"windows": len(windows), "tasks": sent})
    return sent
