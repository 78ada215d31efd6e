"""Trade retention: delete trades older than ``TRADE_RETENTION_DAYS`` in bounded batches.

Each statement deletes at most ``RETENTION_BATCH_SIZE`` rows and commits on its own (autocommit), so no lock is
held for long and the consumer's inserts proceed in between. Candles, indicators, stats and whale alerts are kept:
they are the long-term record (alerts are keyed by the trade's natural key, not a foreign key, for this reason).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

# The BRIN index on traded_at finds the old pages; the primary key makes the DELETE itself an index lookup.
_DELETE_BATCH = """
DELETE FROM analytics_trade
WHERE id IN (SELECT id FROM analytics_trade WHERE traded_at < %(cutoff)s LIMIT %(limit)s)
"""


def retention_cutoff(now: datetime | None = None, days: int | None = None) -> datetime:
    """Trades traded strictly before this instant are deleted."""
    keep = settings.TRADE_RETENTION_DAYS if days is None else days
    return (now or timezone.now()) - timedelta(days=keep)


def apply_retention(now: datetime | None = None, batch_size: int | None = None, max_batches: int | None = None) -> int:
    """Delete expired trades in batches until none is left (or ``max_batches`` ran); return the rows deleted."""
    size = settings.RETENTION_BATCH_SIZE if batch_size is None else batch_size
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    cutoff = retention_cutoff(now)
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        with connection.cursor() as cur:
            cur.execute(_DELETE_BATCH, {"cutoff": cutoff, "limit": size})
            count = cur.rowcount
        deleted += count
        batches += 1
        if count < size:
            break
    logger.info("retention applied", extra={"cutoff": cutoff.isoformat(), "deleted": deleted, "batches": batches})
    return deleted
