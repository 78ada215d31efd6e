"""The one read path of candle series (analytics.bars): ranges, the newest N, and digests equal to those the
backtests and the models stored before it existed (a stored ``bars_hash``/``data_hash`` must still match)."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from analytics.bars import closes_at, has_candles, load_candles
from backtest.data import load_bars
from prediction.features import load_last, load_series
from tests.backtest.helpers import START, store_candles

pytestmark = pytest.mark.django_db

# The readers' SQL before the read path, verbatim: the digests are pinned to what they gave.
_OLD_BACKTEST = """
SELECT (extract(epoch FROM open_time) * 1000)::bigint, open::text, high::text, low::text, close::text
FROM analytics_candle
WHERE exchange = %s AND symbol = %s AND interval = %s AND open_time >= %s AND open_time < %s
ORDER BY open_time
"""
_OLD_PREDICTION = """
SELECT (extract(epoch FROM open_time) * 1000)::bigint, open::text, high::text, low::text, close::text,
       volume::text
FROM analytics_candle
WHERE exchange = %s AND symbol = %s AND interval = %s AND open_time >= %s AND open_time <= %s
ORDER BY open_time
"""
CLOSES = ["100.5", "101.25", "99.000000000001", "102", "103.7", "98.1"]


def _old_digest(sql: str, params: list[Any]) -> str:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    digest = hashlib.sha256()
    for row in rows:
        digest.update((",".join(map(str, row)) + "\n").encode())
    return digest.hexdigest()


def test_the_digests_are_those_of_the_former_readers():
    store_candles(CLOSES, skip=frozenset({2}))
    store_candles(["7"], start=START + timedelta(days=1))  # the next day: outside the backtest's one day
    bars = load_bars("binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 1))
    assert len(bars) == 5
    assert bars.volume is None
    assert bars.digest == _old_digest(_OLD_BACKTEST, ["binance", "BTCUSDT", "1h", START, START + timedelta(days=1)])
    end = START + timedelta(days=1)
    series = load_series("binance", "BTCUSDT", "1h", START, end)
    assert len(series) == 6
    assert series.volume is not None
    assert series.volume.tolist() == [1.0] * 6
    assert series.digest == _old_digest(_OLD_PREDICTION, ["binance", "BTCUSDT", "1h", START, end])
    assert series.digest != load_candles("binance", "BTCUSDT", "1h", START, end).digest  # volume is hashed


def test_the_newest_bars_up_to_a_time_come_oldest_first():
    store_candles(CLOSES)
    last = load_last("binance", "BTCUSDT", "1h", START + timedelta(hours=4), count=3)
    assert last.close.tolist() == [99.000000000001, 102.0, 103.7]
    assert (
        last.digest
        == load_series("binance", "BTCUSDT", "1h", START + timedelta(hours=2), START + timedelta(hours=4)).digest
    )
    assert len(load_candles("binance", "BTCUSDT", "1h", last=100)) == len(CLOSES)
    assert len(load_candles("binance", "ETHUSDT", "1h")) == 0


def test_the_point_reads():
    store_candles(CLOSES, skip=frozenset({1}))
    assert has_candles("binance", "BTCUSDT", "1h")
    assert not has_candles("binance", "BTCUSDT", "4h")
    wanted = [START, START + timedelta(hours=1), START + timedelta(hours=3)]
    assert closes_at("binance", "BTCUSDT", "1h", wanted) == {START: Decimal("100.5"), wanted[2]: Decimal("102")}


def test_an_unknown_interval_is_refused():
    with pytest.raises(ValueError, match="unknown interval '2h'"):
        load_candles("binance", "BTCUSDT", "2h")
