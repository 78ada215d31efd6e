"""Retention on real PostgreSQL: whole partitions older than TRADE_RETENTION_DAYS are dropped, never deleted row by
row; only the default partition's expired rows are deleted, in bounded batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from analytics.models import Candle, Trade, WhaleAlert
from analytics.partitions import default_rows, ensure_partitions, partitions
from analytics.retention import apply_retention, retention_cutoff

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 1, 31, 12, tzinfo=UTC)


def trades_at(times: list[datetime], first_id: int = 1) -> None:
    Trade.objects.bulk_create(
        Trade(
            exchange="binance",
            symbol="BTCUSDT",
            trade_id=first_id + i,
            price=Decimal("60000"),
            quantity=Decimal("2"),
            is_buyer_maker=False,
            traded_at=t,
            received_at=t,
        )
        for i, t in enumerate(times)
    )


def test_cutoff_follows_the_setting(settings):
    settings.TRADE_RETENTION_DAYS = 7
    assert retention_cutoff(NOW) == NOW - timedelta(days=7)
    assert retention_cutoff(NOW, days=1) == NOW - timedelta(days=1)


def test_drops_whole_expired_partitions_without_a_delete_and_keeps_candles_and_alerts(settings):
    settings.TRADE_RETENTION_DAYS = 30
    settings.TRADE_PARTITION_DAYS = 1
    cutoff = NOW - timedelta(days=30)  # 2026-01-01 12:00
    ensure_partitions(NOW - timedelta(days=40), NOW)
    expired = [datetime(2025, 12, 22, tzinfo=UTC) + timedelta(hours=7 * i) for i in range(33)]  # 12-22 .. 12-31
    same_day = [cutoff - timedelta(hours=1), cutoff + timedelta(hours=1)]  # the cutoff's partition: kept whole
    kept = [NOW - timedelta(days=1), NOW]
    trades_at(expired)
    trades_at(same_day + kept, first_id=1000)
    Candle.objects.create(
        exchange="binance", symbol="BTCUSDT", interval="1m", open_time=expired[0], open=1, high=1, low=1, close=1,
        volume=1, quote_volume=1, trade_count=1, vwap=1,
    )  # fmt: skip
    WhaleAlert.objects.create(
        exchange="binance", symbol="BTCUSDT", trade_id=1, price=60000, quantity=2, notional=120000, side="buy",
        traded_at=expired[0],
    )  # fmt: skip
    statements: list[str] = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    # Partitions other tests of the session made (and committed) count too: every one ending by the cutoff goes.
    expected = [p.name for p in partitions() if p.end <= cutoff]
    assert {f"analytics_trade_p202512{day}" for day in range(22, 32)} <= set(expected)  # 12-22 .. 12-31
    with connection.execute_wrapper(record):
        result = apply_retention(now=NOW, batch_size=10)
    assert result.partitions == expected
    assert result.default_rows == 0
    deletes = [s for s in statements if s.lstrip().upper().startswith("DELETE")]
    assert deletes
    assert all("analytics_trade_default" in s for s in deletes)  # no row of a partition deleted
    assert sorted(Trade.objects.values_list("traded_at", flat=True)) == sorted(same_day + kept)
    assert min(p.start for p in partitions()) == datetime(2026, 1, 1, tzinfo=UTC)
    assert Candle.objects.count() == 1
    assert WhaleAlert.objects.count() == 1
    again = apply_retention(now=NOW, batch_size=10)  # nothing left: running again changes nothing
    assert (again.partitions, again.default_rows) == ([], 0)


def test_default_partition_rows_go_in_bounded_batches():
    # 400 days back: no partition holds them, so they sit in the default partition.
    trades_at([NOW - timedelta(days=400, seconds=i) for i in range(7)])
    assert default_rows() == 7
    statements: list[str] = []

    def count_deletes(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("DELETE"):
            statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_deletes):
        assert apply_retention(now=NOW, batch_size=3, max_batches=2).default_rows == 6
    assert len(statements) == 2
    assert Trade.objects.count() == 1
    assert apply_retention(now=NOW, batch_size=3).default_rows == 1
    with pytest.raises(ValueError, match="batch_size"):
        apply_retention(now=NOW, batch_size=0)


def test_default_batch_size_comes_from_settings(settings):
    settings.RETENTION_BATCH_SIZE = 4
    trades_at([NOW - timedelta(days=400, seconds=i) for i in range(9)])
    assert apply_retention(now=NOW, max_batches=1).default_rows == 4
