"""Bollinger(20, 2): middle = SMA20, upper/lower = middle +/- 2 population standard deviations."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from decimal import Decimal, localcontext

import numpy as np
import numpy.typing as npt
from typing_extensions import override

from analytics.indicator_units.base import FloatArray, PeriodIndicator, Series, check_period, padded, window

BB_PERIOD, BB_WIDTH = 20, Decimal(2)


def bollinger(
    values: Sequence[Decimal], period: int = BB_PERIOD, width: Decimal = BB_WIDTH
) -> tuple[Series, Series, Series]:
    """Upper, middle and lower Bollinger bands (population standard deviation).

    Running sums of the values and their squares keep it linear in the series length; they are kept exact with
    80 significant digits, so a value does not depend on where the series starts.
    """
    check_period(period)
    upper: Series = [None] * len(values)
    middle: Series = [None] * len(values)
    lower: Series = [None] * len(values)
    total = squares = Decimal(0)
    for i, v in enumerate(values):
        with localcontext() as exact:
            exact.prec = 80
            total += v
            squares += v * v
            if i >= period:
                old = values[i - period]
                total -= old
                squares -= old * old
            if i < period - 1:
                continue
            mean = total / period
            variance = max(squares / period - mean * mean, Decimal(0))
        # Back in the default 28-digit context: the same rounding as the other indicators.
        mean = +mean
        spread = width * variance.sqrt()
        upper[i], middle[i], lower[i] = mean + spread, mean, mean - spread
    return upper, middle, lower


def bollinger_arrays(
    values: npt.ArrayLike, period: int = BB_PERIOD, width: float = float(BB_WIDTH)
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """:func:`bollinger` over a float array: upper, middle and lower bands (population standard deviation,
    each window's own, so no cancellation between large running sums)."""
    check_period(period)
    x = np.asarray(values, dtype=np.float64)
    if len(x) < period:
        empty = np.full(len(x), np.nan)
        return empty, empty.copy(), empty.copy()
    windows = window(x, period)
    middle = padded(windows.mean(axis=1), period - 1)
    spread = width * padded(windows.std(axis=1), period - 1)
    return middle + spread, middle, middle - spread


class Bollinger(PeriodIndicator):
    """Upper, middle and lower Bollinger bands over ``period`` closes, ``width`` standard deviations apart."""

    name = "bollinger"
    label = "Bollinger"
    outputs = ("bb_upper", "bb_middle", "bb_lower")
    rank = 50

    def __init__(self, period: int = BB_PERIOD, width: Decimal | float = BB_WIDTH) -> None:
        self.width = width
        super().__init__(period)

    @override
    def reset(self) -> None:
        self._window: deque[Decimal] = deque()
        self._total = self._squares = Decimal(0)

    @property
    @override
    def initialized(self) -> bool:
        return len(self._window) >= self.period

    @override
    def update(self, value: Decimal) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
        # The exact running sums of bollinger(), step for step.
        with localcontext() as exact:
            exact.prec = 80
            self._total += value
            self._squares += value * value
            self._window.append(value)
            if len(self._window) > self.period:
                old = self._window.popleft()
                self._total -= old
                self._squares -= old * old
            if not self.initialized:
                return None, None, None
            mean = self._total / self.period
            variance = max(self._squares / self.period - mean * mean, Decimal(0))
        mean = +mean
        spread = Decimal(self.width) * variance.sqrt()
        return mean + spread, mean, mean - spread

    @override
    def compute(self, values: Sequence[Decimal]) -> tuple[Series, Series, Series]:
        return bollinger(values, self.period, Decimal(self.width))

    @override
    def compute_array(self, values: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        return bollinger_arrays(values, self.period, float(self.width))
