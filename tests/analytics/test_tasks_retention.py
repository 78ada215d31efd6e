"""Retention on real PostgreSQL: only trades older than TRADE_RETENTION_DAYS go, in bounded batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from analytics.models import Candle, Trade, WhaleAlert
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


def test_deletes_only_expired_trades_in_batches_and_keeps_candles_and_alerts(settings):
    settings.TRADE_RETENTION_DAYS = 30
    cutoff = NOW - timedelta(days=30)
    old = [cutoff - timedelta(seconds=i + 1) for i in range(25)]
    kept = [cutoff, cutoff + timedelta(seconds=1), NOW]  # exactly at the cutoff is kept
    trades_at(old)
    trades_at(kept, first_id=1000)
    Candle.objects.create(
        exchange="binance", symbol="BTCUSDT", interval="1m", open_time=old[-1], open=1, high=1, low=1, close=1,
        volume=1, quote_volume=1, trade_count=1, vwap=1,
    )  # fmt: skip
    WhaleAlert.objects.create(
        exchange="binance", symbol="BTCUSDT", trade_id=1, price=60000, quantity=2, notional=120000, side="buy",
        traded_at=old[0],
    )  # fmt: skip
    statements: list[str] = []

    def count_deletes(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("DELETE"):
            statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_deletes):
        assert apply_retention(now=NOW, batch_size=10) == 25
    # 10 + 10 + 5: every statement bounded by the batch size.
    assert len(statements) == 3
    assert sorted(Trade.objects.values_list("traded_at", flat=True)) == kept
    assert Candle.objects.count() == 1
    assert WhaleAlert.objects.count() == 1
    assert apply_retention(now=NOW, batch_size=10) == 0  # nothing left: running again changes nothing


def test_max_batches_bounds_one_run_and_bad_size_is_refused():
    trades_at([NOW - timedelta(days=400, seconds=i) for i in range(7)])
    assert apply_retention(now=NOW, batch_size=3, max_batches=2) == 6
    assert Trade.objects.count() == 1
    assert apply_retention(now=NOW, batch_size=3) == 1
    with pytest.raises(ValueError, match="batch_size"):
        apply_retention(now=NOW, batch_size=0)


def test_default_batch_size_comes_from_settings(settings):
    settings.RETENTION_BATCH_SIZE = 4
    trades_at([NOW - timedelta(days=400, seconds=i) for i in range(9)])
    assert apply_retention(now=NOW, max_batches=1) == 4
