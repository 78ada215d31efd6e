"""A hole of more than ``INDICATOR_MAX_GAP_BARS`` bars restarts every indicator: the Decimal (stored) and
vectorised (backtests, features) forms on real closes, and the live task path after an outage on real trades."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from analytics import indicators as ind
from analytics import tasks
from analytics.models import Candle, IndicatorPoint
from analytics.segments import per_segment, segments
from tests.analytics.test_candles import RawTrade, insert
from tests.analytics.test_indicators_vectorised import assert_agree, real_closes
from tests.backtest.helpers import store_candles
from tests.conftest import DATA

T0 = datetime(2021, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
PERIODS = [7, 25, 99]
CUT = 300  # the first bar after the hole
TRX_CSV = DATA / "binance-trade-csv" / "trxusdt_trade_stream_2025-03-04.csv"


def holed(missing: int) -> tuple[list[datetime], list[Decimal]]:
    """Real hourly closes on consecutive hours, with ``missing`` bars left out before bar :data:`CUT`."""
    closes = real_closes(2)
    times = [T0 + i * HOUR for i in range(len(closes))]
    return times[:CUT] + [t + missing * HOUR for t in times[CUT:]], closes


def test_segments_split_only_at_holes_longer_than_the_setting(settings):
    hour = 3_600_000
    times = np.array([0, 1, 2, 27, 28, 54, 55], dtype=np.int64) * hour  # holes of 24 and 25 missing bars
    assert segments(times, hour) == [(0, 5), (5, 7)]
    assert segments(times, hour, max_gap=23) == [(0, 3), (3, 5), (5, 7)]
    settings.INDICATOR_MAX_GAP_BARS = 25
    assert segments(times, hour) == [(0, 7)]
    assert segments(np.array([], dtype=np.int64), hour) == []
    with pytest.raises(ValueError, match="step"):
        segments(times, 0)


def test_decimal_indicators_restart_after_a_long_hole_and_bridge_a_short_one(settings):
    assert settings.INDICATOR_MAX_GAP_BARS == 24
    times, closes = holed(25)
    rows = ind.compute_rows(times, closes, PERIODS, step=HOUR)
    # Before the hole: as before. After it: exactly a fresh series starting after the hole.
    assert rows[:CUT] == ind.compute_rows(times[:CUT], closes[:CUT], PERIODS)
    fresh = ind.compute_rows(times[CUT:], closes[CUT:], PERIODS)
    assert rows[CUT:] == fresh
    # Null until each indicator has its own bars after the hole.
    after = rows[CUT:]
    assert all(r.sma == {} and r.rsi is None and r.bb_middle is None for r in after[:6])
    assert set(after[6].sma) == {"7"}
    assert after[13].rsi is None
    assert after[14].rsi is not None
    assert after[24].macd is None
    assert after[25].macd is not None
    assert after[32].macd_signal is None
    assert after[33].macd_signal is not None
    assert set(after[98].sma) == {"7", "25", "99"}
    # Without the segments (the old behaviour) the first bar after the hole had values carried across it.
    assert ind.compute_rows(times, closes, PERIODS)[CUT].sma != {}
    # A hole of exactly INDICATOR_MAX_GAP_BARS missing bars is bridged: one series, as if the bars were adjacent.
    times, closes = holed(24)
    assert ind.compute_rows(times, closes, PERIODS, step=HOUR) == ind.compute_rows(times, closes, PERIODS)


def test_vectorised_indicators_restart_the_same_way_and_agree_with_the_decimal_ones():
    times, closes = holed(30)
    ms = [int(t.timestamp() * 1000) for t in times]
    bounds = segments(ms, 3_600_000)
    assert bounds == [(0, CUT), (CUT, len(closes))]
    x = np.array([float(c) for c in closes])
    scale = float(max(closes))
    for period in (7, 25):
        vec = per_segment(ind.sma_array, x, bounds, period)
        np.testing.assert_array_equal(vec[CUT:], ind.sma_array(x[CUT:], period))
        assert_agree(per_segment(ind.sma, closes, bounds, period), vec, scale)
        vec = per_segment(ind.ema_array, x, bounds, period)
        np.testing.assert_array_equal(vec[CUT:], ind.ema_array(x[CUT:], period))
        assert_agree(per_segment(ind.ema, closes, bounds, period), vec, scale)
    vec = per_segment(ind.rsi_array, x, bounds)
    assert np.isnan(vec[CUT : CUT + 14]).all()
    np.testing.assert_array_equal(vec[CUT:], ind.rsi_array(x[CUT:]))
    assert_agree(per_segment(ind.rsi, closes, bounds), vec, 100)
    for name_dec, name_vec in ((ind.macd, ind.macd_arrays), (ind.bollinger, ind.bollinger_arrays)):
        decimal_parts, vector_parts = per_segment(name_dec, closes, bounds), per_segment(name_vec, x, bounds)
        for live, vectorised, alone in zip(decimal_parts, vector_parts, name_vec(x[CUT:]), strict=True):
            np.testing.assert_array_equal(vectorised[CUT:], alone)
            assert_agree(live, vectorised, scale)


def trx_trades() -> list[RawTrade]:
    """The bundled TRXUSDT trade stream (48 minutes of real trades), in the shape the candle tests insert."""
    with TRX_CSV.open(newline="") as fh:
        return [
            RawTrade(
                int(r["TradeId"]),
                r["Price"],
                r["Quantity"],
                int(r["TransactionTime"]) // 1000,
                int(r["EventTime"]) // 1000,
                r["IsBuyerMarketMaker"] == "1",
            )
            for r in csv.DictReader(fh)
        ]


def sma_ref(closes: list[Decimal], n: int, i: int) -> Decimal | None:
    """Independent SMA: the mean of the last ``n`` closes up to ``i``."""
    return sum(closes[i - n + 1 : i + 1], Decimal(0)) / n if i >= n - 1 else None


def rsi_ref(closes: list[Decimal], n: int = 14) -> list[Decimal | None]:
    """Independent Wilder RSI, written out separately from the project's code."""
    out: list[Decimal | None] = [None] * len(closes)
    gain = loss = Decimal(0)
    for i in range(1, len(closes)):
        change = closes[i] - closes[i - 1]
        up, down = max(change, Decimal(0)), max(-change, Decimal(0))
        if i <= n:
            gain, loss = gain + up / n, loss + down / n
            if i < n:
                continue
        else:
            gain, loss = (gain * (n - 1) + up) / n, (loss * (n - 1) + down) / n
        out[i] = Decimal(100) if loss == 0 and gain > 0 else Decimal(50) if loss == 0 else 100 - 100 / (1 + gain / loss)
    return out


@pytest.mark.django_db
def test_live_task_after_an_outage_restarts_the_indicators(settings):
    """Real trades through the live task: ten minutes, an outage of 11 minutes (more than the 10 bars set
    here), then the remaining 27 minutes. The indicators after it are those of the 27 minutes alone."""
    settings.INDICATOR_MAX_GAP_BARS = 10
    settings.CANDLES_PUSH_INTERVAL = 0
    trades = trx_trades()
    first_minute = trades[0].time_ms // 60_000
    before = [t for t in trades if t.time_ms // 60_000 - first_minute < 10]
    after = [t for t in trades if t.time_ms // 60_000 - first_minute >= 21]
    insert(before, symbol="TRXUSDT")
    assert tasks.update_candles("binance", "TRXUSDT", before[0].time_ms, before[-1].time_ms) > 0
    insert(after, symbol="TRXUSDT")
    assert tasks.update_candles("binance", "TRXUSDT", after[0].time_ms, after[-1].time_ms) > 0

    candles = list(Candle.objects.filter(symbol="TRXUSDT", interval="1m").order_by("open_time"))
    minutes = [int(c.open_time.timestamp()) // 60 - first_minute for c in candles]
    assert minutes == [*range(10), *range(21, 48)]  # every minute of the stream had a trade
    points = {
        p.open_time: p for p in IndicatorPoint.objects.filter(symbol="TRXUSDT", interval="1m").order_by("open_time")
    }
    assert list(points) == [c.open_time for c in candles]
    for part in (candles[:10], candles[10:]):
        closes = [c.close for c in part]
        rsis = rsi_ref(closes)
        for i, candle in enumerate(part):
            point = points[candle.open_time]
            for n in (7, 25):
                expected = sma_ref(closes, n, i)
                got = point.sma.get(str(n))
                assert (got is None) == (expected is None), (candle.open_time, n)
                if expected is not None:
                    assert abs(Decimal(got) - expected) < Decimal("1e-11")
            assert (point.rsi is None) == (rsis[i] is None), candle.open_time
            if rsis[i] is not None:
                assert abs(point.rsi - rsis[i]) < Decimal("1e-9")
            assert (point.bb_middle is None) == (i < 19)
            assert (point.macd is None) == (i < 25)
    # The first candle after the outage has no value at all (it had values carried across the hole before).
    first_after = points[candles[10].open_time]
    assert (first_after.sma, first_after.ema, first_after.rsi, first_after.macd) == ({}, {}, None, None)


@pytest.mark.django_db
def test_recompute_command_clears_values_once_computed_across_a_hole(monkeypatch):
    """Rows stored by an earlier version (computed across the hole) are rewritten, all-null rows included."""
    real = real_closes(2)
    filler = [real[CUT]] * 30  # never stored: the hole
    candles = store_candles(
        [*real[:CUT], *filler, *real[CUT : CUT + 40]], start=T0, skip=frozenset(range(CUT, CUT + 30))
    )
    times, closes = [c.open_time for c in candles], [c.close for c in candles]
    ind._upsert("binance", "BTCUSDT", "1h", ind.compute_rows(times, closes, PERIODS))  # the old, hole-blind rows
    assert IndicatorPoint.objects.get(interval="1h", open_time=times[CUT]).sma != {}
    monkeypatch.setattr("analytics.indicators.MAX_RECOMPUTED", 64)  # several chunks
    out = io.StringIO()
    call_command("recompute_indicators", "--symbol", "btcusdt", "--interval", "1h", stdout=out)
    assert f"binance BTCUSDT 1h: {len(times)} indicator rows recomputed" in out.getvalue()
    stored = list(IndicatorPoint.objects.filter(interval="1h").order_by("open_time"))
    expected = ind.compute_rows(times, closes, PERIODS, step=HOUR)
    assert [ind.row_from_point(p) for p in stored] == expected
    assert (stored[CUT].sma, stored[CUT].rsi, stored[CUT].bb_upper) == ({}, None, None)
    with pytest.raises(CommandError, match="--interval"):
        call_command("recompute_indicators", "--symbol", "BTCUSDT", "--interval", "2m")
    with pytest.raises(CommandError, match="--from"):
        call_command("recompute_indicators", "--symbol", "BTCUSDT", "--from", "2021-13-01")
