"""Trade retention: drop the trades table's partitions older than ``TRADE_RETENTION_DAYS``, whole.

Retention works in whole partitions (:mod:`analytics.partitions`): a trade goes when the partition holding it ends
at or before the cutoff, so up to one partition period more than ``TRADE_RETENTION_DAYS`` is kept. Detaching and
dropping a partition is a catalogue change, not a DELETE scan: no dead rows, no vacuum, no index bloat. Only rows
in the default partition (outside every range partition: rare) are deleted, in batches of at most
``RETENTION_BATCH_SIZE`` rows, each statement committed on its own so no lock is held for long.

Candles, indicators, stats and whale alerts are kept: they are the long-term record (alerts are keyed by the
trade's natural key, not a foreign key, for this reason).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from analytics import partitions

logger = logging.getLogger(__name__)

# The default partition is small (trades outside every range): its own BRIN-less scan is cheap, and the
# primary key makes the DELETE itself an index lookup.
# Every partitioned table here (partitions.Table) has an ``id`` primary key column.
_DELETE_BATCH = """
DELETE FROM {default}
WHERE id IN (SELECT id FROM {default} WHERE {column} < %(cutoff)s LIMIT %(limit)s)
"""


def retention_cutoff(now: datetime | None = None, days: int | None = None) -> datetime:
    """Trades traded strictly before this instant are expired."""
    keep = settings.TRADE_RETENTION_DAYS if days is None else days
    return (now or timezone.now()) - timedelta(days=keep)


@dataclass(frozen=True)
class RetentionResult:
    """What one retention run removed: whole partitions, and rows of the default partition."""

    cutoff: datetime
    partitions: list[str]
    default_rows: int


def apply_retention(
    now: datetime | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
    using: str = DEFAULT_DB_ALIAS,
    table: partitions.Table = partitions.TRADES,
    days: int | None = None,
) -> RetentionResult:
    """Drop the expired partitions of ``table`` (the trades; kept ``days``, default ``TRADE_RETENTION_DAYS``) in
    database ``using``, then delete its default partition's expired rows in bounded batches (until none is left or
    ``max_batches`` ran)."""
    size = settings.RETENTION_BATCH_SIZE if batch_size is None else batch_size
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    cutoff = retention_cutoff(now, days)
    dropped = partitions.drop_before(cutoff, using, table)
    deleted = batches = 0
    delete = _DELETE_BATCH.format(default=table.default, column=table.column)
    while max_batches is None or batches < max_batches:
        with connections[using].cursor() as cur:
            cur.execute(delete, {"cutoff": cutoff, "limit": size})
            count = cur.rowcount
        deleted += count
        batches += 1
        if count < size:
            break
    logger.info(
        "retention applied",
        extra={
            "table": table.parent,
            "cutoff": cutoff.isoformat(),
            "partitions_dropped": dropped,
            "default_deleted": deleted,
        },
    )
    return RetentionResult(cutoff, dropped, deleted)
