"""Parameter sweeps: every combination of a grid, ranked by one metric, with an optional out-of-sample check.

``--train-until DATE`` splits the bars at the end of that day (UTC): the grid is ranked on the bars up to it
(in sample) and the best combination is then run alone on the bars after it (out of sample), so a user sees how
much of an in-sample result was fitted to noise. Targets are computed once on the whole series (every indicator
is causal, so the later bars cannot leak into the earlier ones) and each half is simulated from fresh cash, flat.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from backtest.data import day_range
from backtest.engine import LOWER_IS_BETTER, METRICS, Bars, simulate
from backtest.strategies import Number, Strategy
from cryptoproject.timeutil import datetime_to_ms

Progress = Callable[[int, int], None]


def parse_grid(spec: str) -> tuple[str, list[Number]]:
    """``name=start:stop:step`` (both ends inclusive), ``name=a,b,c`` or ``name=value``."""
    name, sep, values = spec.partition("=")
    name = name.strip()
    if not sep or not name or not values.strip():
        raise ValueError(f"grid {spec!r}: expected name=start:stop:step or name=a,b,c")
    try:
        if ":" in values:
            parts = [Decimal(p) for p in values.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
            start, stop, step = parts
            count = int((stop - start) / step) + 1
            decimals = [start + step * i for i in range(count)]
        else:
            decimals = [Decimal(p) for p in values.split(",")]
    except (InvalidOperation, ValueError):
        raise ValueError(
            f"grid {spec!r}: expected name=start:stop:step (step > 0, start <= stop) or name=a,b,c"
        ) from None
    return name, [int(d) if d == d.to_integral_value() else float(d) for d in decimals]


def combinations(grid: Mapping[str, Sequence[Number]]) -> list[dict[str, Number]]:
    """Every combination of the grid's values, in grid order."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


@dataclass
class Ranked:
    """One combination's parameters and metrics (in sample when the sweep has a split)."""

    params: dict[str, Number]
    metrics: dict[str, float | int | None]


@dataclass
class SweepResult:
    """The ranked combinations; with a split, the best one's out-of-sample metrics."""

    metric: str
    ranked: list[Ranked]
    skipped: list[tuple[dict[str, Number], str]] = field(default_factory=list)
    in_sample_bars: int = 0
    out_of_sample_bars: int = 0
    out_of_sample: dict[str, float | int | None] | None = None

    @property
    def best(self) -> Ranked | None:
        """The top-ranked combination, or None when every combination was skipped."""
        return self.ranked[0] if self.ranked else None


def rank_key(metric: str) -> Callable[[Ranked], tuple[bool, float]]:
    """Best first: descending, ascending for the metrics where less is better; undefined values last."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0

    def key(row: Ranked) -> tuple[bool, float]:
        value = row.metrics.get(metric)
        return (value is None, sign * float(value) if value is not None else 0.0)

    return key


def split_index(bars: Bars, train_until: date) -> int:
    """How many bars open before the end of ``train_until`` (UTC)."""
    _, end = day_range(train_until, train_until)
    return int(np.searchsorted(bars.open_time, datetime_to_ms(end), side="left"))


def sweep(
    bars: Bars,
    strategy: Strategy,
    grid: Mapping[str, Sequence[Number]],
    *,
    base: Mapping[str, Any] | None = None,
    metric: str = "sharpe",
    cash: float,
    fee: float,
    train_until: date | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """Run every combination of ``grid`` (over the ``base`` parameters) and rank them by ``metric``."""
    key = rank_key(metric)
    for name in grid:
        if name not in strategy.defaults:
            raise ValueError(
                f"{strategy.name}: unknown grid parameter {name!r} (parameters: {', '.join(strategy.defaults)})"
            )
    split = len(bars) if train_until is None else split_index(bars, train_until)
    if split == 0 or (train_until is not None and split == len(bars)):
        raise ValueError(f"--train-until {train_until} leaves no bars on one side of the split")
    train = bars.slice(0, split)
    combos = combinations(grid)
    result = SweepResult(metric, [], in_sample_bars=split, out_of_sample_bars=len(bars) - split)
    for done, combo in enumerate(combos, start=1):
        params_in = {**(base or {}), **combo}
        try:
            params = strategy.params(params_in)
        except ValueError as exc:
            result.skipped.append((combo, str(exc)))
        else:
            targets = strategy.targets(bars, params)
            run = simulate(train, targets[:split], cash=cash, fee=fee, params=params)
            result.ranked.append(Ranked(params, run.metrics))
        if progress is not None:
            progress(done, len(combos))
    result.ranked.sort(key=key)
    best = result.best
    if train_until is not None and best is not None:
        targets = strategy.targets(bars, best.params)  # the indicators are memoised: no recomputation
        result.out_of_sample = simulate(bars.slice(split), targets[split:], cash=cash, fee=fee).metrics
    return result
