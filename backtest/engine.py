"""The backtest engine: bars in, fills, equity curve, trades and metrics out (docs/BACKTESTING.md is the contract).

A strategy turns bars into a target position per bar (long or flat), decided on the close of bar t; the engine
fills the change at the open of bar t+1. The simulation is vectorised: between two fills the equity is either
constant cash or ``qty * close``, and each round trip multiplies the cash by
``exit_open * (1 - fee) / (entry_open * (1 + fee))``, so one cumulative product gives the cash before every entry
and one gather gives the whole curve. ``backtest.reference`` keeps the same contract as a per-bar Python loop, the
oracle the tests compare against; docs/BENCHMARKS.md has both timed on 39,638 hourly bars.

Prices are float64 here (backtests are statistics, not accounting; the stored candles stay exact decimals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

# The bars (and the indicators strategies reach through Bars.indicator) are the analytics read path's type.
from analytics.bars import Bars

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
DEFAULT_CASH = 10_000.0
DEFAULT_FEE = 0.001


@dataclass(frozen=True)
class Trade:
    """One round trip. A position still open at the end is closed at the last close, with no fee."""

    entry_time: int
    entry_price: float
    exit_time: int
    exit_price: float
    ret: float
    pnl: float
    open: bool = False

    def as_json(self) -> dict[str, Any]:
        """The round trip for JSON: times and prices as simulated, ``ret`` as ``return``; pnl and ``open`` left out."""
        return {
            "entry_time": self.entry_time,
            "entry_price": self.entry_price,
            "exit_time": self.exit_time,
            "exit_price": self.exit_price,
            "return": self.ret,
        }


@dataclass
class Result:
    """The outcome of one simulation: per-bar position (held during the bar) and equity, trades, metrics."""

    bars: Bars
    targets: BoolArray
    position: BoolArray
    equity: FloatArray
    trades: list[Trade]
    fees: float
    metrics: dict[str, float | int | None]
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` layout: metrics, equity as ``[open_time_ms, equity]`` pairs, trades, params, bars."""
        return {
            "metrics": self.metrics,
            "equity": [[t, e] for t, e in zip(self.bars.open_time.tolist(), self.equity.tolist(), strict=True)],
            "trades": [t.as_json() for t in self.trades],
            "params": self.params,
            "bars": len(self.bars),
        }


def simulate(
    bars: Bars,
    targets: npt.ArrayLike,
    *,
    cash: float = DEFAULT_CASH,
    fee: float = DEFAULT_FEE,
    params: dict[str, Any] | None = None,
) -> Result:
    """Fill ``targets`` (True = long after the close of that bar) on ``bars``; see docs/BACKTESTING.md."""
    n = len(bars)
    if n == 0:
        raise ValueError("no bars to backtest")
    if cash <= 0:
        raise ValueError(f"cash must be positive, got {cash}")
    if not 0 <= fee < 1:
        raise ValueError(f"fee must be in [0, 1), got {fee}")
    target = np.asarray(targets, dtype=np.bool_)
    if target.shape != (n,):
        raise ValueError(f"targets: expected {n} values, got {target.shape}")
    opens, closes = bars.open, bars.close

    # Held during bar t: the target decided on the close of t-1 (never on the last bar's close; flat at bar 0).
    position = np.zeros(n, dtype=np.bool_)
    position[1:] = target[:-1]
    before = np.zeros(n, dtype=np.bool_)
    before[1:] = position[:-1]
    entry_mask = position & ~before
    exit_mask = before & ~position
    entries, exits = np.flatnonzero(entry_mask), np.flatnonzero(exit_mask)

    entry_px, exit_px = opens[entries], opens[exits]
    closed = len(exits)
    growth = exit_px * (1 - fee) / (entry_px[:closed] * (1 + fee))
    # capital[j]: the cash after j round trips (the cash an entry spends, or a flat bar holds).
    capital = np.empty(closed + 1)
    capital[0] = cash
    capital[1:] = cash * np.cumprod(growth)
    qty = capital[: len(entries)] / (entry_px * (1 + fee))

    trade_of_bar = np.cumsum(entry_mask) - 1
    exits_so_far = np.cumsum(exit_mask)
    equity = np.where(position, qty[trade_of_bar] * closes if len(qty) else 0.0, capital[exits_so_far])

    fees = float((qty * entry_px).sum() * fee + (qty[:closed] * exit_px).sum() * fee)
    trades = _trades(bars, entries, exits, entry_px, exit_px, growth, capital, fee)
    metrics = compute_metrics(bars, equity, position, trades, cash, fees)
    return Result(bars, target, position, equity, trades, fees, metrics, dict(params or {}))


def _trades(
    bars: Bars,
    entries: npt.NDArray[np.intp],
    exits: npt.NDArray[np.intp],
    entry_px: FloatArray,
    exit_px: FloatArray,
    growth: FloatArray,
    capital: FloatArray,
    fee: float,
) -> list[Trade]:
    times = bars.open_time
    closed = len(exits)
    # Whole columns to Python numbers at once (per-element numpy scalars cost ~5x more with ~1,000 trades a run).
    out = [
        Trade(e, p, x, q, g - 1, c * (g - 1))
        for e, x, p, q, g, c in zip(
            times[entries[:closed]].tolist(),
            times[exits].tolist(),
            entry_px[:closed].tolist(),
            exit_px.tolist(),
            growth.tolist(),
            capital[:closed].tolist(),
            strict=True,
        )
    ]
    if len(entries) > len(exits):  # still long at the end: valued at the last close, no exit fee
        last_close = float(bars.close[-1])
        ret = last_close / (float(entry_px[-1]) * (1 + fee)) - 1
        out.append(
            Trade(
                int(times[entries[-1]]),
                float(entry_px[-1]),
                int(times[-1]),
                last_close,
                ret,
                float(capital[-1] * ret),
                True,
            )
        )
    return out


def _finite(value: float) -> float | None:
    """A metric as a JSON number, or ``None`` where it is undefined (a zero denominator)."""
    return value if math.isfinite(value) else None


def compute_metrics(
    bars: Bars, equity: FloatArray, position: BoolArray, trades: list[Trade], cash: float, fees: float
) -> dict[str, float | int | None]:
    """The metrics of docs/BACKTESTING.md. Undefined ratios (no variation, no loss, no drawdown) are ``None``."""
    final = float(equity[-1])
    peak = np.maximum.accumulate(equity)
    max_drawdown = float((1 - equity / peak).max())
    returns = equity[1:] / equity[:-1] - 1
    per_year = bars.bars_per_year
    sharpe = sortino = math.nan
    if len(returns) >= 2:
        mean = float(returns.mean())
        std = float(returns.std(ddof=1))
        downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
        sharpe = mean / std * math.sqrt(per_year) if std > 0 else math.nan
        sortino = mean / downside * math.sqrt(per_year) if downside > 0 else math.nan
    years = len(bars) / per_year
    growth = math.log(final / cash) / years
    # Over a few bars the annualised figure is astronomically large: beyond a float it is reported as undefined.
    cagr = math.expm1(growth) if growth < 700 else math.nan
    pnls = [t.pnl for t in trades]
    gains = sum(p for p in pnls if p > 0)
    losses = -sum(p for p in pnls if p < 0)
    return {
        "total_return": final / cash - 1,
        "final_equity": final,
        "trades": len(trades),
        "max_drawdown": max_drawdown,
        "buy_and_hold_return": float(bars.close[-1] / bars.open[0] - 1),
        "sharpe": _finite(sharpe),
        "sortino": _finite(sortino),
        "cagr": _finite(cagr),
        "calmar": _finite(cagr / max_drawdown) if max_drawdown > 0 else None,
        "win_rate": sum(1 for t in trades if t.ret > 0) / len(trades) if trades else None,
        "profit_factor": float(gains / losses) if losses > 0 else None,
        "exposure": float(position.mean()),
        "fees": fees,
    }


# Metrics where smaller is better (the sweep ranks ascending on them).
LOWER_IS_BETTER = frozenset({"max_drawdown", "fees"})
METRICS = (
    "total_return",
    "final_equity",
    "trades",
    "max_drawdown",
    "buy_and_hold_return",
    "sharpe",
    "sortino",
    "cagr",
    "calmar",
    "win_rate",
    "profit_factor",
    "exposure",
    "fees",
)
