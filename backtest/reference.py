"""The contract of docs/BACKTESTING.md as a plain per-bar loop: the oracle the vectorised engine is tested
against, and the baseline ``benchmarks/backtest.py`` measures it beside. Not used to run backtests."""

from __future__ import annotations

from collections.abc import Sequence


def simulate_loop(
    opens: Sequence[float], closes: Sequence[float], targets: Sequence[bool], cash: float, fee: float
) -> tuple[list[float], list[tuple[int, int | None]], float]:
    """Equity per bar, the (entry bar, exit bar or None) of each trade, and the fees paid."""
    qty = 0.0
    fees = 0.0
    equity: list[float] = []
    trades: list[tuple[int, int | None]] = []
    for t in range(len(opens)):
        # The order decided on the previous close fills at this open (none is ever placed on the last bar).
        want_long = t > 0 and bool(targets[t - 1])
        if want_long and qty == 0:
            qty = cash / (opens[t] * (1 + fee))
            fees += qty * opens[t] * fee
            cash = 0.0
            trades.append((t, None))
        elif not want_long and qty > 0:
            cash = qty * opens[t] * (1 - fee)
            fees += qty * opens[t] * fee
            qty = 0.0
            trades[-1] = (trades[-1][0], t)
        equity.append(cash + qty * closes[t])
    return equity, trades, fees
