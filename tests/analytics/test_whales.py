"""Whale alerts on real PostgreSQL: exactly one per trade at or above the threshold, none below, idempotent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from analytics.models import SymbolThreshold, Trade, WhaleAlert
from analytics.payloads import plain_decimal, whale_item
from analytics.timeutil import datetime_to_ms
from analytics.whales import detect_whales, threshold_for
from tests.analytics.test_candles import insert, read_trades

pytestmark = pytest.mark.django_db

ALL_TIME = (0, 4_102_444_800_000)


def qualifying(threshold: Decimal) -> set[int]:
    """The reference, from the file's strings: trade ids whose price x quantity is at or above the threshold."""
    return {t.trade_id for t in read_trades() if Decimal(t.price) * Decimal(t.quantity) >= threshold}


def test_threshold_default_and_override(settings):
    settings.WHALE_THRESHOLD_USD = Decimal("250000")
    assert threshold_for("binance", "BTCUSDT") == Decimal("250000")
    SymbolThreshold.objects.create(exchange="binance", symbol="BTCUSDT", threshold_usd=Decimal("5000.50"))
    assert threshold_for("binance", "BTCUSDT") == Decimal("5000.50")
    assert threshold_for("binance", "ETHUSDT") == Decimal("250000")
    assert threshold_for("coinbase", "BTCUSDT") == Decimal("250000")


def test_the_recorded_whale_gets_exactly_one_alert_and_nothing_below(settings):
    settings.WHALE_THRESHOLD_USD = Decimal("100000")
    trades = read_trades()
    insert(trades)
    expected = qualifying(Decimal("100000"))
    assert len(expected) >= 1  # the ~$427k trade of the recording
    ids = detect_whales("binance", "BTCUSDT", trades[0].time_ms, trades[-1].time_ms)
    alerts = list(WhaleAlert.objects.all())
    assert {a.trade_id for a in alerts} == expected
    assert sorted(ids) == sorted(a.id for a in alerts)
    whale = max(alerts, key=lambda a: a.notional)
    raw = next(t for t in trades if t.trade_id == whale.trade_id)
    assert whale.notional == Decimal(raw.price) * Decimal(raw.quantity)
    assert Decimal("400000") < whale.notional < Decimal("450000")
    assert whale.side == ("sell" if raw.buyer_maker else "buy")
    assert whale.threshold == Decimal("100000")
    assert datetime_to_ms(whale.traded_at) == raw.time_ms
    # The same window again (a replay, a redelivered task) creates nothing and reports nothing new.
    assert detect_whales("binance", "BTCUSDT", trades[0].time_ms, trades[-1].time_ms) == []
    assert WhaleAlert.objects.count() == len(expected)


def test_per_symbol_override_applies_to_its_symbol_only(settings):
    settings.WHALE_THRESHOLD_USD = Decimal("100000")
    trades = read_trades()
    insert(trades, symbol="BTCUSDT")
    insert(trades, symbol="BTCFDUSD")
    SymbolThreshold.objects.create(exchange="binance", symbol="BTCFDUSD", threshold_usd=Decimal("20000"))
    detect_whales("binance", "BTCUSDT", *ALL_TIME)
    detect_whales("binance", "BTCFDUSD", *ALL_TIME)
    low = qualifying(Decimal("20000"))
    assert len(low) > len(qualifying(Decimal("100000")))
    assert set(WhaleAlert.objects.filter(symbol="BTCFDUSD").values_list("trade_id", flat=True)) == low
    assert set(WhaleAlert.objects.filter(symbol="BTCUSDT").values_list("trade_id", flat=True)) == qualifying(
        Decimal("100000")
    )
    assert set(WhaleAlert.objects.filter(symbol="BTCFDUSD").values_list("threshold", flat=True)) == {Decimal("20000")}


def make_trade(trade_id: int, price: str, quantity: str, ms: int, *, buyer_maker: bool = False) -> Trade:
    when = datetime.fromtimestamp(ms // 1000, tz=UTC).replace(microsecond=(ms % 1000) * 1000)
    return Trade(
        exchange="kraken",
        symbol="BTC/USD",
        trade_id=trade_id,
        price=Decimal(price),
        quantity=Decimal(quantity),
        is_buyer_maker=buyer_maker,
        traded_at=when,
        received_at=when,
    )


def test_exact_boundary_and_time_range(settings):
    settings.WHALE_THRESHOLD_USD = Decimal("100000")
    base = 1_723_161_600_000
    Trade.objects.bulk_create(
        [
            make_trade(1, "50000", "2", base),  # exactly the threshold: alert
            make_trade(2, "49999.99", "2", base + 1),  # 99,999.98: none
            make_trade(3, "100000.000000000001", "1", base + 2, buyer_maker=True),  # just above: alert, sell
            make_trade(4, "60000", "5", base + 10_000),  # outside the first range
        ]
    )
    ids = detect_whales("kraken", "BTC/USD", base, base + 2)
    assert len(ids) == 2
    alerts = {a.trade_id: a for a in WhaleAlert.objects.all()}
    assert set(alerts) == {1, 3}
    assert alerts[3].side == "sell"
    assert alerts[1].side == "buy"
    assert detect_whales("kraken", "BTC/USD", base + 3, base + 10_000) != []
    assert set(WhaleAlert.objects.values_list("trade_id", flat=True)) == {1, 3, 4}
    payload = whale_item(alerts[1])
    assert payload == {
        "id": alerts[1].pk,
        "exchange": "kraken",
        "symbol": "BTC/USD",
        "trade_id": 1,
        "price": plain_decimal(alerts[1].price),
        "quantity": plain_decimal(alerts[1].quantity),
        "notional": "100000",
        "side": "buy",
        "threshold": "100000",
        "traded_at": alerts[1].traded_at.isoformat(),
        "t": base,
        "created_at": alerts[1].created_at.isoformat(),
    }
    assert Decimal(payload["notional"]) == Decimal("100000")
    with pytest.raises(ValueError, match="before"):
        detect_whales("kraken", "BTC/USD", 5, 1)
