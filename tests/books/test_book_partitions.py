"""The books' series on real PostgreSQL: partitioned by day like the trades (analytics.partitions), retention drops
whole partitions older than BOOK_RETENTION_DAYS and the default partition's old rows, the beat tasks do both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analytics.partitions import default_rows, ensure_partitions, partitions
from books import partitions as book_partitions
from books import tasks
from books.models import BookMetric, BookSnapshot
from cryptoproject.celery import app

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 1, 31, 12, tzinfo=UTC)


def rows_at(times: list[datetime]) -> None:
    BookMetric.objects.bulk_create(
        BookMetric(exchange="binance", symbol="BTCUSDT", second=t, t=int(t.timestamp() * 1000), valid=True,
                   source_offset=i)
        for i, t in enumerate(times)
    )  # fmt: skip
    BookSnapshot.objects.bulk_create(
        BookSnapshot(exchange="binance", symbol="BTCUSDT", window_start=t, t=int(t.timestamp() * 1000), valid=True,
                     bids=[], asks=[], source_offset=i)
        for i, t in enumerate(times)
    )  # fmt: skip


def test_both_series_are_partitioned_by_day_and_retention_drops_whole_old_partitions(settings) -> None:
    settings.BOOK_RETENTION_DAYS = 7
    settings.TRADE_PARTITION_DAYS = 1
    for table in book_partitions.TABLES:
        ensure_partitions(NOW - timedelta(days=10), NOW, table=table)
    old = [NOW - timedelta(days=9, hours=h) for h in range(3)]
    kept = [NOW - timedelta(days=6), NOW]
    outside = [datetime(2020, 1, 1, tzinfo=UTC), NOW + timedelta(days=400)]  # no partition: the default one
    rows_at(old + kept + outside)
    assert default_rows(table=book_partitions.METRICS) == default_rows(table=book_partitions.SNAPSHOTS) == 2
    dropped = book_partitions.apply_retention(NOW)
    cutoff_day = (NOW - timedelta(days=7)).date()
    for table in book_partitions.TABLES:
        assert dropped[table.parent]
        assert all(name.startswith(f"{table.parent}_p") for name in dropped[table.parent])
        assert min(p.start for p in partitions(table=table)).date() >= cutoff_day - timedelta(days=1)
    expected = sorted([*kept, outside[1]])
    assert sorted(BookMetric.objects.values_list("second", flat=True)) == expected
    assert sorted(BookSnapshot.objects.values_list("window_start", flat=True)) == expected


def test_the_beat_tasks_make_and_drop_the_books_partitions(settings) -> None:
    settings.BOOK_RETENTION_DAYS = 7
    # The migration made today's partitions and the next days'; a suite that crossed midnight since it ran gets the
    # new last day now (a CI run once did), and then nothing more: the task is idempotent.
    tasks.maintain_partitions()
    assert tasks.maintain_partitions()["created"] == []
    today = datetime.now(UTC).strftime("%Y%m%d")
    for table in book_partitions.TABLES:
        assert f"{table.parent}_p{today}" in {p.name for p in partitions(table=table)}
    for table in book_partitions.TABLES:
        ensure_partitions(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC), table=table)
    dropped = tasks.apply_retention()["dropped"]
    assert dropped == {
        "books_bookmetric": ["books_bookmetric_p20200101"],
        "books_booksnapshot": ["books_booksnapshot_p20200101"],
    }
    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert {"books.tasks.maintain_partitions", "books.tasks.apply_retention"} <= set(schedule)
    assert app.amqp.router.route({}, "books.tasks.apply_retention")["queue"].name == "analytics"
