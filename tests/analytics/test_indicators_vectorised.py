"""The vectorised indicators (backtests, features) against the live Decimal ones, on real and generated closes."""

from __future__ import annotations

import zipfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import indicators as ind

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# The bundled BTCUSDT hourly klines (helper copies live in data/; the shared folder sits beside the clone).
# The bundled archive zips (data/binance-klines): real BTCUSDT hourly closes.
KLINE_DIR = ROOT / "data/binance-klines/data/spot/monthly/klines/BTCUSDT/1h"


def real_closes(months: int = 3) -> list[Decimal]:
    closes: list[Decimal] = []
    for path in sorted(KLINE_DIR.glob("BTCUSDT-1h-*.zip"))[-months:]:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                closes.extend(Decimal(line.split(",")[4]) for line in archive.read(name).decode().splitlines())
    return closes


def assert_agree(live: list[Decimal | None], vectorised: np.ndarray, scale: float) -> None:
    """Same definedness, and equal to 12 significant digits of the series' scale (the stored precision of a
    price: 12 decimals of values that float64 holds to about 16 significant digits)."""
    assert len(live) == len(vectorised)
    for i, (a, b) in enumerate(zip(live, vectorised.tolist(), strict=True)):
        if a is None:
            assert np.isnan(b), f"index {i}: live undefined, vectorised {b}"
        else:
            assert abs(float(a) - b) <= 1e-12 * scale, f"index {i}: live {a}, vectorised {b!r}"


def check_all(closes: list[Decimal]) -> None:
    x = np.array([float(c) for c in closes])
    scale = max(1.0, float(max(abs(c) for c in closes)))
    for period in (1, 2, 5, 14, 20, 50):
        assert_agree(ind.sma(closes, period), ind.sma_array(x, period), scale)
        assert_agree(ind.ema(closes, period), ind.ema_array(x, period), scale)
        assert_agree(ind.rsi(closes, period), ind.rsi_array(x, period), 100)
    for live, vec in zip(ind.macd(closes), ind.macd_arrays(x), strict=True):
        assert_agree(live, vec, scale)
    for live, vec in zip(ind.macd(closes, 3, 7, 4), ind.macd_arrays(x, 3, 7, 4), strict=True):
        assert_agree(live, vec, scale)
    for live, vec in zip(ind.bollinger(closes), ind.bollinger_arrays(x), strict=True):
        assert_agree(live, vec, scale)
    for live, vec in zip(ind.bollinger(closes, 5, Decimal("1.5")), ind.bollinger_arrays(x, 5, 1.5), strict=True):
        assert_agree(live, vec, scale)


def test_agree_on_real_btcusdt_hourly_closes():
    closes = real_closes()
    assert len(closes) > 2000
    check_all(closes)


@settings(max_examples=40, deadline=None)
@given(
    start=st.sampled_from(["0.00012345", "1.5", "61837.63"]),
    steps=st.lists(st.integers(-300, 300), min_size=0, max_size=120),
)
def test_agree_on_generated_series(start, steps):
    """Random walks at the price scales the platform sees (a sub-cent token to BTC), with flat stretches."""
    first = Decimal(start)
    closes = [first]
    for s in steps:
        closes.append(max(first / 10, closes[-1] * (1 + Decimal(s) / 10_000)).quantize(Decimal("1e-8")))
    check_all(closes)


def test_short_series_and_bad_periods():
    assert np.isnan(ind.sma_array([1.0], 2)).all()
    assert np.isnan(ind.ema_array([1.0], 2)).all()
    assert np.isnan(ind.rsi_array([1.0, 2.0], 2)).all()
    assert all(np.isnan(a).all() for a in ind.bollinger_arrays([1.0], 2))
    assert all(np.isnan(a).all() for a in ind.macd_arrays([1.0] * 5))
    with pytest.raises(ValueError, match="period must be at least 1"):
        ind.sma_array([1.0], 0)
    with pytest.raises(ValueError, match="fast period 26 must be shorter"):
        ind.macd_arrays([1.0], 26, 12)
