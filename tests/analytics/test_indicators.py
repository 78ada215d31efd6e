"""Indicators: pure functions against hand-computed and textbook values, and their storage on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from analytics.indicators import (
    bollinger,
    compute_rows,
    ema,
    macd,
    rsi,
    sma,
    update_indicators,
    warmup_candles,
)
from analytics.models import Candle, IndicatorPoint
from analytics.payloads import indicator_item


def d(*values: float | str) -> list[Decimal]:
    return [Decimal(str(v)) for v in values]


def close_to(value: Decimal | None, expected: float, places: int = 2) -> bool:
    return value is not None and round(float(value), places) == round(expected, places)


def test_sma_hand_computed():
    assert sma(d(1, 2, 3, 4, 5), 3) == [None, None, Decimal(2), Decimal(3), Decimal(4)]
    assert sma(d(1, 2), 3) == [None, None]
    assert sma(d(7), 1) == [Decimal(7)]


def test_ema_seeded_with_sma_then_smoothed():
    # period 2: seed (2 + 4) / 2 = 3, k = 2/3: 6*2/3 + 3/3 = 5, 8*2/3 + 5/3 = 7, 12*2/3 + 7/3 = 31/3.
    out = ema(d(2, 4, 6, 8, 12), 2)
    assert out[:4] == [None, Decimal(3), Decimal(5), Decimal(7)]
    assert out[4] is not None
    assert abs(out[4] - Decimal(31) / 3) < Decimal("1e-20")
    assert ema(d(1, 2), 3) == [None, None]


@pytest.mark.parametrize("func", [sma, ema, rsi])
def test_period_must_be_positive(func):
    with pytest.raises(ValueError, match="period must be at least 1"):
        func(d(1, 2, 3), 0)


# Wilder's RSI worked example as published by StockCharts ("Relative Strength Index (RSI)", cs-rsi.xls). The sheet
# prints 70.53, 66.32, ... because it rounds the average gain/loss to 2 decimals (0.24 / 0.10); unrounded
# (as TA-Lib computes it) the first average gain is 3.34 / 14 and the first average loss 1.40 / 14, so
# RS = 3.34 / 1.40 and RSI = 100 - 100 / (1 + RS) = 70.46, then the values below.
WILDER_CLOSES = d(
    44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61, 46.28, 46.28,
    46.00, 46.03, 46.41, 46.22, 45.64, 46.21, 46.25, 45.71, 46.45, 45.78, 45.35, 44.03, 44.18, 44.22, 44.57,
    43.42, 42.66, 43.13,
)  # fmt: skip
WILDER_RSI = [
    70.46, 66.25, 66.48, 69.35, 66.29, 57.92, 62.88, 63.21, 56.01, 62.34, 54.67, 50.39, 40.02, 41.49, 41.90,
    45.50, 37.32, 33.09, 37.79,
]  # fmt: skip


def test_rsi_matches_wilders_textbook_example():
    out = rsi(WILDER_CLOSES, 14)
    assert out[:14] == [None] * 14
    assert out[14] == 100 - 100 / (1 + Decimal("3.34") / Decimal("1.40"))
    got = [round(float(v), 2) for v in out[14:] if v is not None]
    assert len(got) == len(WILDER_RSI)
    for value, expected in zip(got, WILDER_RSI, strict=True):
        assert abs(value - expected) <= 0.01


def test_rsi_edge_cases():
    assert rsi(d(*range(14)), 14) == [None] * 14  # 14 closes give 13 changes: too short
    assert rsi(d(*([5] * 20)), 14)[14:] == [Decimal(50)] * 6  # flat: defined, neutral
    assert rsi(d(*range(20)), 14)[14:] == [Decimal(100)] * 6  # only gains
    assert rsi(d(*range(20, 0, -1)), 14)[14:] == [Decimal(0)] * 6  # only losses
    # 2-period hand computation: changes +2, -1 -> gain 1, loss 0.5 -> 100 - 100/3; then +3 -> gain 2, loss 0.25.
    out = rsi(d(10, 12, 11, 14), 2)
    assert out[:2] == [None, None]
    assert close_to(out[2], 100 - 100 / 3, 10)
    assert close_to(out[3], 100 - 100 / 9, 10)


def float_ema(values: list[float], period: int) -> list[float | None]:
    out: list[float | None] = [None] * len(values)
    if len(values) < period:
        return out
    k = 2 / (period + 1)
    prev = sum(values[:period]) / period
    out[period - 1] = prev
    for i in range(period, len(values)):
        prev = values[i] * k + prev * (1 - k)
        out[i] = prev
    return out


def test_macd_against_an_independent_float_computation():
    closes = [100 + (i % 7) * 1.5 - (i % 3) * 2.25 + i * 0.1 for i in range(60)]
    line, signal, hist = macd(d(*closes))
    fast, slow = float_ema(closes, 12), float_ema(closes, 26)
    expected_line = [f - s for f, s in zip(fast[25:], slow[25:], strict=True) if f is not None and s is not None]
    expected_signal = float_ema(expected_line, 9)
    assert line[:25] == [None] * 25
    assert signal[:33] == [None] * 33
    assert hist[:33] == [None] * 33
    for i, expected in enumerate(expected_line):
        assert close_to(line[25 + i], expected, 9)
    for i in range(8, len(expected_line)):
        sig = expected_signal[i]
        assert sig is not None
        assert close_to(signal[25 + i], sig, 9)
        assert close_to(hist[25 + i], expected_line[i] - sig, 9)


def test_macd_short_series_and_bad_periods():
    assert macd(d(*range(20))) == ([None] * 20, [None] * 20, [None] * 20)
    line, signal, _ = macd(d(*range(30)))
    assert line[25] is not None
    assert signal == [None] * 30  # five MACD values cannot seed a 9-period signal
    with pytest.raises(ValueError, match="shorter"):
        macd(d(1, 2, 3), fast=26, slow=12)


def test_bollinger_population_std():
    upper, middle, lower = bollinger(d(1, 2, 3, 4, 5), 5, Decimal(2))
    assert middle == [None] * 4 + [Decimal(3)]
    # population variance (4 + 1 + 0 + 1 + 4) / 5 = 2
    assert upper[4] == Decimal(3) + 2 * Decimal(2).sqrt()
    assert lower[4] == Decimal(3) - 2 * Decimal(2).sqrt()
    flat_upper, flat_middle, flat_lower = bollinger(d(*([7] * 25)))
    assert flat_upper[19:] == flat_middle[19:] == flat_lower[19:] == [Decimal(7)] * 6


def test_warmup_covers_the_longest_period():
    assert warmup_candles([7, 25, 99]) == 495
    assert warmup_candles([3]) == 5 * 26 + 9


def test_compute_rows_and_payload_shapes():
    base = datetime(2024, 8, 9, tzinfo=UTC)
    times = [base + timedelta(minutes=i) for i in range(40)]
    closes = d(*[100 + i for i in range(40)])
    rows = compute_rows(times, closes, [7, 25])
    assert rows[5].sma == {}
    assert rows[6].sma == {"7": Decimal("103.000000000000")}
    assert set(rows[30].ema) == {"7", "25"}
    assert rows[13].rsi is None
    assert rows[14].rsi == Decimal(100)
    assert rows[24].macd is None
    assert rows[25].macd is not None
    payload = indicator_item("1m", rows[39])
    assert payload["interval"] == "1m"
    assert payload["t"] == int(times[39].timestamp() * 1000)
    assert payload["open_time"] == times[39].isoformat()
    assert payload["sma"] == {"7": "136", "25": "127"}
    assert payload["rsi"] == "100"
    assert payload["bb_middle"] == "129.5"
    assert indicator_item("1m", rows[0])["macd"] is None


def make_candles(count: int, *, interval: str = "1m", start: datetime | None = None) -> list[Candle]:
    base = start or datetime(2024, 8, 9, tzinfo=UTC)
    step = timedelta(minutes=1)
    candles = []
    for i in range(count):
        close = Decimal(60000 + (i % 11) * 7 - (i % 5) * 3)
        candles.append(
            Candle(
                exchange="binance",
                symbol="BTCUSDT",
                interval=interval,
                open_time=base + i * step,
                open=close,
                high=close,
                low=close,
                close=close,
                volume=Decimal(1),
                quote_volume=close,
                trade_count=1,
                vwap=close,
            )
        )
    return Candle.objects.bulk_create(candles)


@pytest.mark.django_db
def test_update_indicators_upserts_touched_candles_from_warm_history():
    candles = make_candles(600)
    start = candles[0].open_time
    closes = [c.close for c in candles]
    frm = candles[550].open_time
    rows = update_indicators("binance", "BTCUSDT", "1m", frm)
    assert [r.open_time for r in rows] == [c.open_time for c in candles[550:]]
    stored = IndicatorPoint.objects.filter(exchange="binance", symbol="BTCUSDT", interval="1m")
    assert stored.count() == 50
    # The 495 candles of history make the windowed values equal a full-series computation: exactly for the
    # window-based ones (SMA, Bollinger), within the warm-up bound for the recursive ones (EMA, RSI).
    full = compute_rows([c.open_time for c in candles], closes, [7, 25, 99])
    point = stored.get(open_time=candles[599].open_time)
    assert point.sma == {k: str(v) for k, v in full[599].sma.items()}
    assert point.bb_upper == full[599].bb_upper
    assert abs(Decimal(point.ema["99"]) - full[599].ema["99"]) < Decimal("0.01")
    assert point.rsi is not None
    assert abs(point.rsi - full[599].rsi) < Decimal("0.0001")
    # Running it again changes nothing; a bounded window only touches that window.
    before = list(stored.order_by("open_time").values_list("open_time", "sma", "ema", "rsi", "macd", "bb_lower"))
    update_indicators("binance", "BTCUSDT", "1m", frm)
    after = list(stored.order_by("open_time").values_list("open_time", "sma", "ema", "rsi", "macd", "bb_lower"))
    assert before == after
    limited = update_indicators("binance", "BTCUSDT", "1m", start, candles[2].open_time)
    assert len(limited) == 3
    assert limited[0].sma == {}
    assert limited[0].rsi is None
    assert update_indicators("binance", "ETHUSDT", "1m", start) == []
    with pytest.raises(ValueError, match="unknown interval"):
        update_indicators("binance", "BTCUSDT", "2m", start)


@pytest.mark.django_db
def test_recomputation_after_an_old_candle_is_capped(monkeypatch):
    candles = make_candles(30)
    monkeypatch.setattr("analytics.indicators.MAX_RECOMPUTED", 10)
    rows = update_indicators("binance", "BTCUSDT", "1m", candles[5].open_time)
    assert [r.open_time for r in rows] == [c.open_time for c in candles[5:15]]
    assert IndicatorPoint.objects.count() == 10


def test_bollinger_does_not_depend_on_where_the_series_starts():
    closes = [Decimal("61234.567890123456") + Decimal(i % 13) / 7 for i in range(200)]
    upper, middle, lower = bollinger(closes)
    tail_upper, tail_middle, tail_lower = bollinger(closes[150:])
    assert upper[169:] == tail_upper[19:]
    assert middle[169:] == tail_middle[19:]
    assert lower[169:] == tail_lower[19:]
    # With prices as stored (12 decimals) the middle band is exactly the SMA.
    stored = [c.quantize(Decimal("1e-12")) for c in closes]
    assert bollinger(stored)[1] == sma(stored, 20)
    flat = bollinger([Decimal("0.333333333333")] * 9, 7)
    assert flat[0][8] == flat[2][8] == Decimal("0.333333333333")
