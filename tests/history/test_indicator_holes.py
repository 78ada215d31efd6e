"""Holes in real archive history restart the stored indicators: two imported ranges months apart, and live trades
resuming years after the imported history (the demo: 2020 klines, then trades of 2024)."""

from __future__ import annotations

import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from analytics import tasks
from analytics.indicators import compute_rows
from analytics.models import Candle, IndicatorPoint
from history.run import ImportRequest, run_import
from tests.analytics.test_candles import FILE_0809, insert, read_trades
from tests.analytics.test_indicator_holes import rsi_ref, sma_ref
from tests.history.conftest import BUNDLE, H1

pytestmark = pytest.mark.django_db(transaction=True)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TODAY = date(2026, 1, 1)
FILE_0808 = FILE_0809.with_name("btcusdt_20240808.gz")


def _import(url: str, tmp_path: Path, interval: str, start: date, end: date) -> None:
    request = ImportRequest(
        base_url=url, cache_dir=tmp_path / "cache", concurrency=2, symbol="BTCUSDT", interval=interval,
        start=start, end=end, indicators=True,
    )  # fmt: skip
    summary = run_import(request, today=TODAY)
    assert summary.written > 0
    assert summary.indicators > 0


def _archive_bars(name: str) -> list[tuple[datetime, Decimal]]:
    """(open time, close) of a bundled zip's klines with a trade, read with plain zipfile, not the importer."""
    with zipfile.ZipFile(H1 / name) as archive:
        lines = archive.read(archive.namelist()[0]).decode().splitlines()
    fields = [line.split(",") for line in lines]
    return [(EPOCH + timedelta(milliseconds=int(f[0])), Decimal(f[4])) for f in fields if int(f[8]) > 0]


def test_two_archive_ranges_months_apart_do_not_share_indicators(tmp_path, mirror):
    server = mirror(BUNDLE)
    _import(server.url, tmp_path, "1h", date(2019, 1, 1), date(2019, 1, 31))
    _import(server.url, tmp_path, "1h", date(2019, 6, 1), date(2019, 6, 30))
    june = _archive_bars("BTCUSDT-1h-2019-06.zip")
    assert len(june) == 719  # 720 hours, one of them an outage bar without a trade (not stored)
    stored = {
        p.open_time: p
        for p in IndicatorPoint.objects.filter(symbol="BTCUSDT", interval="1h", open_time__gte=june[0][0])
    }
    assert list(stored) == sorted(stored)
    assert sorted(stored) == [t for t, _ in june]
    closes = [c for _, c in june]
    rsis = rsi_ref(closes)
    for i, (t, _) in enumerate(june):
        point = stored[t]
        for n in (7, 25, 99):
            expected = sma_ref(closes, n, i)
            got = point.sma.get(str(n))
            assert (got is None) == (expected is None), (t, n)
            if expected is not None:
                assert abs(Decimal(got) - expected) < Decimal("1e-11"), (t, n)
        assert (point.rsi is None) == (rsis[i] is None), t
        if rsis[i] is not None:
            assert abs(point.rsi - rsis[i]) < Decimal("1e-9"), t
    # The other indicators equal a fresh computation over June alone (the project's own functions).
    fresh = compute_rows([t for t, _ in june], closes, [7, 25, 99])
    for row in fresh:
        point = stored[row.open_time]
        assert ({k: Decimal(v) for k, v in point.ema.items()}, point.macd, point.macd_signal, point.bb_upper) == (
            row.ema,
            row.macd,
            row.macd_signal,
            row.bb_upper,
        )
    # January's own values are untouched by June, and the daily rollups restart too.
    january = _archive_bars("BTCUSDT-1h-2019-01.zip")
    last_january = IndicatorPoint.objects.get(symbol="BTCUSDT", interval="1h", open_time=january[-1][0])
    expected = sma_ref([c for _, c in january], 7, len(january) - 1)
    assert expected is not None
    assert abs(Decimal(last_january.sma["7"]) - expected) < Decimal("1e-11")
    first_june_day = IndicatorPoint.objects.get(symbol="BTCUSDT", interval="1d", open_time=june[0][0])
    assert (first_june_day.sma, first_june_day.rsi) == ({}, None)


def test_live_trades_years_after_the_imported_history_start_fresh_indicators(tmp_path, mirror, settings):
    """The demo's case: 1m klines of 2020 imported, then live trades of 2024 through the live task. The chart
    showed SMA 7 = 38,464 and RSI 99.96 beside a price of 61,828: values computed across the four-year hole."""
    settings.CANDLES_PUSH_INTERVAL = 0
    _import(mirror(BUNDLE).url, tmp_path, "1m", date(2020, 1, 1), date(2020, 1, 3))
    trades = [*read_trades(FILE_0808), *read_trades(FILE_0809)]
    insert(trades)
    assert tasks.update_candles("binance", "BTCUSDT", trades[0].time_ms, trades[-1].time_ms) > 0

    live = list(Candle.objects.filter(symbol="BTCUSDT", interval="1m", source="live").order_by("open_time"))
    assert len(live) >= 10
    assert live[0].open_time.year == 2024
    closes = [c.close for c in live]
    points = {p.open_time: p for p in IndicatorPoint.objects.filter(symbol="BTCUSDT", interval="1m")}
    for i, candle in enumerate(live):
        point = points[candle.open_time]
        expected = sma_ref(closes, 7, i)
        assert point.sma == ({} if expected is None else {"7": point.sma["7"]}), candle.open_time
        if expected is not None:
            assert abs(Decimal(point.sma["7"]) - expected) < Decimal("1e-11")
            assert abs(Decimal(point.sma["7"]) - candle.close) < 100  # beside the price, not 38,464
        # Fewer than 15 live minutes: no RSI, MACD or Bollinger band yet.
        assert (point.rsi, point.macd, point.bb_middle) == (None, None, None)
    # The imported 2020 history keeps its own warmed-up values.
    last_2020 = Candle.objects.filter(symbol="BTCUSDT", interval="1m", source="imported").latest("open_time")
    assert points[last_2020.open_time].rsi is not None
