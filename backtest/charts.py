"""What a run page draws: the run's curves beside buy-and-hold, the drawdown, and the candles with trade markers,
reduced to a size a browser charts at once (a 55-month hourly run has ~40,000 bars)."""

from __future__ import annotations

from typing import Any

import numpy as np

from backtest.data import load_bars
from backtest.models import BacktestRun

MAX_CANDLES = 400
MAX_POINTS = 2000


def _buckets(n: int, limit: int) -> int:
    return max(1, -(-n // limit))  # ceil(n / limit) bars per bucket


def run_chart(run: BacktestRun) -> dict[str, Any]:
    """Equity, buy-and-hold and drawdown (at most ``MAX_POINTS`` points, the deepest drawdown of each bucket
    kept), candles merged into at most ``MAX_CANDLES`` buckets, and every trade's entry and exit."""
    bars = load_bars(run.exchange, run.symbol, run.interval, run.date_from, run.date_to)
    equity_pairs = run.equity or []
    body: dict[str, Any] = {
        "bars_changed": bool(run.bars_hash) and bars.digest != run.bars_hash,
        "bucket_bars": 1,
        "candles": [],
        "equity": [],
        "buy_and_hold": [],
        "drawdown": [],
        "trades": run.trades or [],
    }
    if not equity_pairs or len(bars) == 0:
        return body
    times = np.array([p[0] for p in equity_pairs], dtype=np.int64)
    equity = np.array([p[1] for p in equity_pairs], dtype=np.float64)
    drawdown = 1 - equity / np.maximum.accumulate(equity)
    # Buy-and-hold on the same bars: all cash in at the first open, valued at each close (no fees).
    closes = dict(zip(bars.open_time.tolist(), bars.close.tolist(), strict=True))
    first_open = float(bars.open[0])
    hold = np.array([closes.get(int(t), np.nan) for t in times]) * float(run.cash) / first_open

    step = _buckets(len(times), MAX_POINTS)
    picked = np.arange(0, len(times), step)
    if picked[-1] != len(times) - 1:
        picked = np.append(picked, len(times) - 1)
    deepest = [int(i + np.argmax(drawdown[i : i + step])) for i in range(0, len(times), step)]
    body["equity"] = [[int(times[i]), float(equity[i])] for i in picked]
    body["buy_and_hold"] = [[int(times[i]), float(hold[i])] for i in picked if np.isfinite(hold[i])]
    body["drawdown"] = [[int(times[i]), float(drawdown[i])] for i in deepest]

    size = _buckets(len(bars), MAX_CANDLES)
    body["bucket_bars"] = size
    candles = []
    for i in range(0, len(bars), size):
        j = min(i + size, len(bars))
        candles.append(
            [
                int(bars.open_time[i]),
                float(bars.open[i]),
                float(bars.high[i:j].max()),
                float(bars.low[i:j].min()),
                float(bars.close[j - 1]),
            ]
        )
    body["candles"] = candles
    return body
