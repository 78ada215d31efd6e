"""Leading/trailing coalescing of per-symbol work across processes, with two Redis ``SET NX`` keys per symbol.

Dispatch uses it for stats refreshes (``STATS_COALESCE_SECONDS``), the candle task for its live pushes. When Redis
is unreachable the answer is "act now": an extra idempotent task beats a stale row.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings

from cryptoproject.redis_clients import shared_redis_client

logger = logging.getLogger(__name__)

STATS_LOCK_PREFIX = "analytics:stats-pending:"
CANDLES_PUSH_PREFIX = "analytics:candles-push:"


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
        client = shared_redis_client(settings.REDIS_URL)
        if client.set(key, b"1", nx=True, px=ttl_ms):
            return 0.0
        if client.set(f"{key}:trailing", b"1", nx=True, px=ttl_ms):
            return float(ttl)
        return None
    except redis.RedisError:
        logger.warning("coalescing unavailable", exc_info=True, extra={"key": key})
        return 0.0
