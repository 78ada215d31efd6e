"""Candles from the real recorded Binance trades equal an independent plain-Python computation; idempotent."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path

import pytest
from django.db import connection

from analytics.candles import ALL_INTERVALS, CandleKey, recompute_candles
from analytics.models import Candle, Trade
from analytics.timeutil import bucket_start, datetime_to_ms, ms_to_datetime

DATA = Path(__file__).resolve().parents[2] / "data" / "binance-spot-ws"
FILE_0809 = DATA / "btcusdt_20240809.gz"
STEP_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}


@dataclass(frozen=True)
class RawTrade:
    """A trade as the file has it: Binance's own fields, untouched strings."""

    trade_id: int
    price: str
    quantity: str
    time_ms: int
    event_ms: int
    buyer_maker: bool


@cache
def read_trades(path: Path = FILE_0809) -> tuple[RawTrade, ...]:
    """Parse the recording with plain gzip + json: one ``<ns> <frame>`` line each, trade frames only."""
    trades = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            _, _, frame = line.partition(" ")
            if '@trade"' not in frame:  # depth and book frames: skip before the (costly) parse
                continue
            msg = json.loads(frame)
            if not isinstance(msg, dict) or not str(msg.get("stream", "")).endswith("@trade"):
                continue
            t = msg["data"]
            trades.append(RawTrade(int(t["t"]), t["p"], t["q"], int(t["T"]), int(t["E"]), bool(t["m"])))
    return tuple(trades)


def insert(trades: Iterable[RawTrade], symbol: str = "BTCUSDT", exchange: str = "binance") -> int:
    rows = [
        Trade(
            exchange=exchange,
            symbol=symbol,
            trade_id=t.trade_id,
            price=Decimal(t.price),
            quantity=Decimal(t.quantity),
            is_buyer_maker=t.buyer_maker,
            traded_at=datetime.fromtimestamp(t.time_ms / 1000, tz=UTC).replace(microsecond=(t.time_ms % 1000) * 1000),
            received_at=datetime.fromtimestamp(t.event_ms // 1000, tz=UTC),
        )
        for t in trades
    ]
    Trade.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def expected_candles(trades: Iterable[RawTrade], interval: str) -> dict[int, dict[str, Decimal | int]]:
    """The reference: group by floor(time / step), order by (time, id), straight from the file's strings."""
    buckets: dict[int, list[RawTrade]] = defaultdict(list)
    for t in trades:
        buckets[t.time_ms - t.time_ms % STEP_MS[interval]].append(t)
    out: dict[int, dict[str, Decimal | int]] = {}
    for start, group in buckets.items():
        group.sort(key=lambda t: (t.time_ms, t.trade_id))
        prices = [Decimal(t.price) for t in group]
        volume = sum((Decimal(t.quantity) for t in group), Decimal(0))
        quote = sum((Decimal(t.price) * Decimal(t.quantity) for t in group), Decimal(0))
        out[start] = {
            "open": prices[0],
            "high": max(prices),
            "low": min(prices),
            "close": prices[-1],
            "volume": volume,
            "quote_volume": quote,
            "trade_count": len(group),
            "vwap": (quote / volume).quantize(Decimal("1e-12"), rounding=ROUND_HALF_UP),
        }
    return out


def stored_candles(interval: str, symbol: str = "BTCUSDT") -> dict[int, dict[str, Decimal | int]]:
    rows = Candle.objects.filter(exchange="binance", symbol=symbol, interval=interval)
    fields = ("open", "high", "low", "close", "volume", "quote_volume", "trade_count", "vwap")
    return {datetime_to_ms(c.open_time): {f: getattr(c, f) for f in fields} for c in rows}


def candle_snapshot() -> list[tuple[object, ...]]:
    return list(
        Candle.objects.order_by("exchange", "symbol", "interval", "open_time").values_list(
            "exchange", "symbol", "interval", "open_time", "open", "high", "low", "close", "volume",
            "quote_volume", "trade_count", "vwap",
        )
    )  # fmt: skip


def test_time_helpers_are_exact():
    ms = 1_723_161_600_001
    assert datetime_to_ms(ms_to_datetime(ms)) == ms
    assert ms_to_datetime(ms).microsecond == 1000
    assert bucket_start(ms_to_datetime(ms), "1m") == datetime(2024, 8, 9, tzinfo=UTC)
    assert bucket_start(datetime(2024, 8, 9, 5, 59, 59, tzinfo=UTC), "4h") == datetime(2024, 8, 9, 4, tzinfo=UTC)
    assert bucket_start(datetime(2024, 8, 9, 23, 59, tzinfo=UTC), "1d") == datetime(2024, 8, 9, tzinfo=UTC)


def test_the_recording_holds_the_documented_trades():
    trades = read_trades()
    assert len(trades) == 10_147
    assert (trades[0].trade_id, trades[-1].trade_id) == (3_735_693_016, 3_735_703_162)


@pytest.mark.django_db
def test_candles_equal_an_independent_computation_for_every_interval():
    trades = read_trades()
    insert(trades)
    start = min(t.time_ms for t in trades)
    end = max(t.time_ms for t in trades)
    touched = recompute_candles("binance", "BTCUSDT", start, end)
    for interval in ALL_INTERVALS:
        expected = expected_candles(trades, interval)
        assert stored_candles(interval) == expected, interval
        assert sorted(k.open_time for k in touched if k.interval == interval) == [
            ms_to_datetime(ms) for ms in sorted(expected)
        ]
    assert len(expected_candles(trades, "1m")) > 5  # several buckets, so the grouping is really exercised
    assert sum(c["trade_count"] for c in stored_candles("1d").values()) == len(trades)


@pytest.mark.django_db
def test_recompute_twice_out_of_order_and_replayed_gives_identical_rows():
    trades = read_trades()
    half = len(trades) // 2
    # The second half arrives first; each batch recomputes only its own window.
    late, early = trades[half:], trades[:half]
    insert(late)
    recompute_candles("binance", "BTCUSDT", late[0].time_ms, late[-1].time_ms)
    insert(early)
    recompute_candles("binance", "BTCUSDT", early[0].time_ms, early[-1].time_ms)
    first = candle_snapshot()
    assert stored_candles("1m") == expected_candles(trades, "1m")
    assert stored_candles("1h") == expected_candles(trades, "1h")
    # A replay of both windows changes nothing.
    recompute_candles("binance", "BTCUSDT", early[0].time_ms, early[-1].time_ms)
    recompute_candles("binance", "BTCUSDT", late[0].time_ms, late[-1].time_ms)
    assert candle_snapshot() == first


@pytest.mark.django_db
def test_only_buckets_touching_the_window_and_only_the_symbol_are_written():
    trades = read_trades()
    insert(trades)
    insert(trades[:100], symbol="ETHUSDT")
    one = trades[5000]
    keys = recompute_candles("binance", "BTCUSDT", one.time_ms, one.time_ms, intervals=["1m", "5m"])
    assert keys == [
        CandleKey("1m", ms_to_datetime(one.time_ms - one.time_ms % 60_000)),
        CandleKey("5m", ms_to_datetime(one.time_ms - one.time_ms % 300_000)),
    ]
    assert set(Candle.objects.values_list("symbol", "interval")) == {("BTCUSDT", "1m"), ("BTCUSDT", "5m")}
    # Asking for a larger interval alone still refreshes the 1m series it is rolled up from, but reports only it.
    # The hour is the roll-up of the minutes recomputed so far (here one): every stored batch recomputes its own.
    minute_ms = one.time_ms - one.time_ms % 60_000
    hour_ms = one.time_ms - one.time_ms % 3_600_000
    hour = recompute_candles("binance", "BTCUSDT", one.time_ms, one.time_ms, intervals=["1h"])
    assert hour == [CandleKey("1h", ms_to_datetime(hour_ms))]
    minute = expected_candles(read_trades(), "1m")[minute_ms]
    assert stored_candles("1h")[hour_ms] == minute
    assert recompute_candles("binance", "BTCUSDT", 0, 1000) == []


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="before"):
        recompute_candles("binance", "BTCUSDT", 10, 5)
    with pytest.raises(ValueError, match="unknown intervals"):
        recompute_candles("binance", "BTCUSDT", 0, 5, intervals=["2m"])


@pytest.mark.django_db
def test_range_scan_uses_the_symbol_time_index():
    trades = read_trades()
    insert(trades)
    insert(trades, symbol="ETHUSDT")
    middle = trades[len(trades) // 2].time_ms
    with connection.cursor() as cur:
        cur.execute("ANALYZE analytics_trade")
        cur.execute(
            "EXPLAIN SELECT price FROM analytics_trade WHERE exchange = %s AND symbol = %s"
            " AND traded_at >= %s AND traded_at < %s",
            ["binance", "BTCUSDT", ms_to_datetime(middle), ms_to_datetime(middle + 5_000)],
        )
        plan = "\n".join(row[0] for row in cur.fetchall())
    # Each partition carries its own copy of the natural key's index (exchange, symbol, traded_at, trade_id), named
    # after the partition (cut to 63 characters).
    assert "_exchange_symbol_traded_at_trade" in plan, plan
    assert "Seq Scan" not in plan, plan
