"""Bars and candles for backtest tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from analytics.models import Candle
from backtest.engine import Bars

START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR_MS = 3_600_000
# The dashboard's backtest form, filled in for the default strategy on the stored days of the tests' candles.
FORM = {
    "strategy": "sma_cross",
    "params": "",
    "exchange": "binance",
    "symbol": "BTCUSDT",
    "interval": "1h",
    "date_from": "2024-01-01",
    "date_to": "2024-01-03",
    "cash": "10000",
    "fee": "0.001",
}


def make_bars(opens: npt.ArrayLike, closes: npt.ArrayLike, interval: str = "1h") -> Bars:
    """Hourly bars from 2024-01-01 00:00 UTC; high/low span open and close."""
    o, c = np.array(opens, dtype=np.float64), np.array(closes, dtype=np.float64)
    t0 = int(START.timestamp() * 1000)
    return Bars(interval, t0 + HOUR_MS * np.arange(len(o), dtype=np.int64), o, np.maximum(o, c), np.minimum(o, c), c)


def store_candles(
    closes: Sequence[str | Decimal],
    *,
    start: datetime = START,
    step: timedelta = timedelta(hours=1),
    exchange: str = "binance",
    symbol: str = "BTCUSDT",
    interval: str = "1h",
    skip: frozenset[int] = frozenset(),
) -> list[Candle]:
    """Stored candles with the given closes, each opening at the previous close (the first at its own close)."""
    rows = []
    prev = Decimal(str(closes[0]))
    for i, raw in enumerate(closes):
        close = Decimal(str(raw))
        if i not in skip:
            rows.append(
                Candle(
                    exchange=exchange,
                    symbol=symbol,
                    interval=interval,
                    open_time=start + step * i,
                    open=prev,
                    high=max(prev, close),
                    low=min(prev, close),
                    close=close,
                    volume=Decimal(1),
                    quote_volume=close,
                    trade_count=1,
                    vwap=close,
                )
            )
        prev = close
    return Candle.objects.bulk_create(rows)
