"""24-hour stats on real PostgreSQL: exact against a plain-Python computation over the trades, cheap via candles."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from django.utils import timezone

from analytics.candles import recompute_candles
from analytics.decimals import fit_column
from analytics.models import Candle, SymbolStats
from analytics.payloads import plain_decimal, stats_item, stats_push
from analytics.queries import known_pairs
from analytics.stats import change_pct, compute_window, refresh_stats
from analytics.timeutil import datetime_to_ms
from tests.analytics.test_candles import RawTrade, insert, read_trades

pytestmark = pytest.mark.django_db

DAY_MS = 86_400_000


def reference(trades: list[RawTrade]) -> dict[str, object]:
    """The expected row: trades within [last - 24 h, last], ordered by (time, id), from the file's strings."""
    last_ms = max(t.time_ms for t in trades)
    window = sorted((t for t in trades if t.time_ms >= last_ms - DAY_MS), key=lambda t: (t.time_ms, t.trade_id))
    prices = [Decimal(t.price) for t in window]
    open_price, last_price = prices[0], prices[-1]
    return {
        "open_price": open_price,
        "last_price": last_price,
        "change_pct": ((last_price - open_price) / open_price * 100).quantize(Decimal("0.0001")),
        "high": max(prices),
        "low": min(prices),
        "volume": sum((Decimal(t.quantity) for t in window), Decimal(0)),
        "quote_volume": sum((Decimal(t.price) * Decimal(t.quantity) for t in window), Decimal(0)),
        "trade_count": len(window),
        "last_trade_ms": last_ms,
    }


def as_dict(stats: SymbolStats) -> dict[str, object]:
    return {
        "open_price": stats.open_price,
        "last_price": stats.last_price,
        "change_pct": stats.change_pct,
        "high": stats.high,
        "low": stats.low,
        "volume": stats.volume,
        "quote_volume": stats.quote_volume,
        "trade_count": stats.trade_count,
        "last_trade_ms": datetime_to_ms(stats.last_trade_at),
    }


def day_of_trades() -> list[RawTrade]:
    """The real recording plus older trades spread over the day before it, some just outside the window."""
    real = list(read_trades())
    last = real[-1].time_ms
    extra = [
        RawTrade(1, "50000.00", "1.5", last - DAY_MS - 1, last - DAY_MS, False),  # 1 ms too old: excluded
        RawTrade(2, "52000.00", "0.25", last - DAY_MS, last - DAY_MS, True),  # exactly 24 h before: the open
        RawTrade(3, "70000.00", "0.1", last - DAY_MS + 700, last - DAY_MS, False),  # same partial minute: the high
        RawTrade(4, "40000.00", "2", last - DAY_MS // 2, last - DAY_MS // 2, True),  # mid-window: the low
        RawTrade(5, "55000.00", "3", last - DAY_MS // 2 + 61_000, last - DAY_MS // 2, False),
    ]
    return extra + real


def test_stats_equal_the_reference_with_lagging_recent_candles():
    trades = day_of_trades()
    insert(trades)
    # Candles exist for the day except the last minute, as when update_candles lags behind the consumer.
    last = trades[-1].time_ms
    recompute_candles("binance", "BTCUSDT", trades[0].time_ms, last - 60_000, intervals=["1m"])
    stats = refresh_stats("binance", "BTCUSDT")
    assert stats is not None
    expected = reference(trades)
    assert as_dict(stats) == expected
    assert expected["open_price"] == Decimal("52000.00")
    assert expected["high"] == Decimal("70000.00")
    assert expected["low"] == Decimal("40000.00")
    assert expected["trade_count"] == len(trades) - 1


def test_body_comes_from_candles_and_refresh_is_idempotent():
    trades = day_of_trades()
    insert(trades)
    recompute_candles("binance", "BTCUSDT", trades[0].time_ms, trades[-1].time_ms, intervals=["1m"])
    first = refresh_stats("binance", "BTCUSDT")
    assert first is not None
    again = refresh_stats("binance", "BTCUSDT")
    assert again is not None
    assert as_dict(again) == as_dict(first) == reference(trades)
    assert SymbolStats.objects.count() == 1
    # Doubling a mid-window candle's volume (not its trades) changes the stats: the candle is what is read.
    mid = Candle.objects.get(interval="1m", trade_count=1, low=Decimal("40000"))
    Candle.objects.filter(pk=mid.pk).update(volume=mid.volume * 2)
    window = compute_window("binance", "BTCUSDT")
    assert window is not None
    assert window.volume == first.volume + mid.volume


def test_a_short_history_is_all_tail():
    trades = list(read_trades())[:50]
    insert(trades)
    stats = refresh_stats("binance", "BTCUSDT")  # no candle at all: everything within the last minutes
    assert stats is not None
    assert as_dict(stats) == reference(trades)


def test_window_starting_on_a_whole_minute():
    trades = list(read_trades())[:30]
    aligned = trades[-1].time_ms - trades[-1].time_ms % 60_000 + 60_000  # the latest trade on a minute boundary
    day_start = RawTrade(7, "61000.5", "0.5", aligned - DAY_MS, aligned - DAY_MS, False)
    last = RawTrade(8, "61001.5", "0.25", aligned, aligned, True)
    every = [day_start, *trades, last]
    insert(every)
    recompute_candles("binance", "BTCUSDT", day_start.time_ms, aligned, intervals=["1m"])
    stats = refresh_stats("binance", "BTCUSDT")
    assert stats is not None
    assert as_dict(stats) == reference(every)
    assert stats.open_price == Decimal("61000.5")


def test_no_trades_means_no_row():
    assert compute_window("binance", "NOPE") is None
    assert refresh_stats("binance", "NOPE") is None
    assert not SymbolStats.objects.exists()


def test_change_pct_rounding_and_zero_open():
    assert change_pct(Decimal("100"), Decimal("101.23456")) == Decimal("1.2346")
    assert change_pct(Decimal("200"), Decimal("100")) == Decimal("-50.0000")
    assert change_pct(Decimal("0"), Decimal("5")) == Decimal("0.0000")


def test_payload_and_known_pairs():
    trades = list(read_trades())[:20]
    insert(trades)
    insert([replace(t, trade_id=t.trade_id + 1) for t in trades[:3]], symbol="ETHUSDT", exchange="coinbase")
    insert(trades[:5], symbol="TRXUSDT")
    recompute_candles("coinbase", "ETHUSDT", trades[0].time_ms, trades[2].time_ms, intervals=["1m"])
    recompute_candles("binance", "TRXUSDT", trades[0].time_ms, trades[4].time_ms, intervals=["1m", "1h"])
    stats = refresh_stats("binance", "BTCUSDT")
    assert stats is not None
    # Trades, candles and stats rows: coinbase ETHUSDT and TRXUSDT have candles, BTCUSDT a stats row.
    assert known_pairs() == [("binance", "BTCUSDT"), ("binance", "TRXUSDT"), ("coinbase", "ETHUSDT")]
    payload = stats_push(stats)
    # The push is the API's stats item with its kind: decimals plain, times ISO 8601 plus ``t`` in ms.
    assert payload == {"kind": "stats", **stats_item(stats)}
    assert payload["trade_count"] == 20
    assert payload["t"] == max(t.time_ms for t in trades)
    assert payload["last_trade_at"] == stats.last_trade_at.isoformat()
    assert payload["high"] == plain_decimal(stats.high)
    assert not payload["last_price"].endswith("0")
    assert Decimal(payload["last_price"]) == reference(trades)["last_price"]


# --------------------------------------------------------------------------------------------- extreme trades
def _raw(trade_id: int, price: str, time_ms: int) -> RawTrade:
    return RawTrade(trade_id=trade_id, price=price, quantity="1", time_ms=time_ms, event_ms=time_ms, buyer_maker=False)


def test_change_pct_is_clamped_to_what_its_column_holds():
    assert change_pct(Decimal("0.000000000001"), Decimal("100000000000000000")) == Decimal("99999999.9999")
    assert change_pct(Decimal("1"), Decimal("2")) == Decimal("100.0000")
    assert fit_column(Decimal("-1e40"), 12, 4) == Decimal("-99999999.9999")
    assert fit_column(Decimal("1e25"), 30, 12) == Decimal("999999999999999999.999999999999")
    assert fit_column(Decimal("123456789012345.1234567890123"), 30, 12) == Decimal("123456789012345.123456789012")


def test_a_huge_price_ratio_is_stored_clamped_instead_of_overflowing_the_row():
    # Both prices fit numeric(30, 12); their ratio (1e29 %) does not fit change_pct's numeric(12, 4).
    t0 = 1_723_161_255_342
    insert([_raw(1, "0.000000000001", t0), _raw(2, "100000000000000000", t0 + 1000)], symbol="WILDUSDT")
    stats = refresh_stats("binance", "WILDUSDT")
    assert stats is not None
    stats.refresh_from_db()
    assert stats.change_pct == Decimal("99999999.9999")
    assert stats.last_price == Decimal("100000000000000000")


def test_known_pairs_come_from_trades_candles_and_stats_rows():
    from tests.backtest.helpers import store_candles

    insert(list(read_trades())[:3], symbol="AAAUSDT")  # trades only
    store_candles(["1", "2", "3"], exchange="kraken", symbol="XBT/USD")  # imported history: candles, no trades
    SymbolStats.objects.create(
        exchange="coinbase", symbol="BTC-USD", last_price=1, open_price=1, high=1, low=1, volume=0, quote_volume=0,
        trade_count=0, change_pct=0, last_trade_at=timezone.now(),
    )  # fmt: skip
    assert known_pairs() == [("binance", "AAAUSDT"), ("coinbase", "BTC-USD"), ("kraken", "XBT/USD")]
