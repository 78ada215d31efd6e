"""SMA(n): the mean of the last n closes."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import numpy.typing as npt
from typing_extensions import override

from analytics.indicator_units.base import FloatArray, PeriodIndicator, Series, check_period, padded, window


def sma(values: Sequence[Decimal], period: int) -> Series:
    """Simple moving average; ``None`` for the first ``period - 1`` points."""
    check_period(period)
    out: Series = [None] * len(values)
    total = Decimal(0)
    for i, v in enumerate(values):
        total += v
        if i >= period:
            total -= values[i - period]
        if i >= period - 1:
            out[i] = total / period
    return out


def sma_array(values: npt.ArrayLike, period: int) -> npt.NDArray[np.float64]:
    """:func:`sma` over a float array. Each mean is taken over its own window (no running sum whose rounding
    error would grow with the series)."""
    check_period(period)
    x = np.asarray(values, dtype=np.float64)
    if len(x) < period:
        return np.full(len(x), np.nan)
    return padded(window(x, period).mean(axis=1), period - 1)


class SMA(PeriodIndicator):
    """Simple moving average over ``period`` closes (one per ``INDICATOR_MA_PERIODS`` period is stored)."""

    name = "sma"
    label = "SMA"
    outputs = ("sma",)
    rank = 10
    per_period = True

    @override
    def reset(self) -> None:
        self._window: deque[Decimal] = deque()
        self._total = Decimal(0)

    @property
    @override
    def initialized(self) -> bool:
        return len(self._window) >= self.period

    @override
    def update(self, value: Decimal) -> Decimal | None:
        # The running total of sma(): add the new close, then take out the one that left the window.
        self._total += value
        self._window.append(value)
        if len(self._window) > self.period:
            self._total -= self._window.popleft()
        return self._total / self.period if self.initialized else None

    @override
    def compute(self, values: Sequence[Decimal]) -> Series:
        return sma(values, self.period)

    @override
    def compute_array(self, values: npt.ArrayLike) -> FloatArray:
        return sma_array(values, self.period)
