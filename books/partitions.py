"""The books' series partitions and retention, by the trades' machinery (:mod:`analytics.partitions`,
:mod:`analytics.retention`): periods of ``TRADE_PARTITION_DAYS``, made ``TRADE_PARTITIONS_AHEAD`` days ahead, and
dropped whole after ``BOOK_RETENTION_DAYS``. Rows outside every partition land in each table's default partition."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

from analytics import partitions as trade_partitions
from analytics import retention

METRICS = trade_partitions.Table("books_bookmetric", "second")
SNAPSHOTS = trade_partitions.Table("books_booksnapshot", "window_start")
TABLES = (METRICS, SNAPSHOTS)


def maintain(now: datetime | None = None, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Make both series' partitions from yesterday to ``TRADE_PARTITIONS_AHEAD`` days ahead; the names created."""
    return [name for table in TABLES for name in trade_partitions.maintain(now, using, table).created]


def apply_retention(now: datetime | None = None, using: str = DEFAULT_DB_ALIAS) -> dict[str, list[str]]:
    """Drop both series' partitions older than ``BOOK_RETENTION_DAYS`` (and their default partitions' old rows);
    the partitions dropped per table."""
    days = int(settings.BOOK_RETENTION_DAYS)
    return {
        table.parent: retention.apply_retention(now, using=using, table=table, days=days).partitions for table in TABLES
    }
