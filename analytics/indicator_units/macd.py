"""MACD(12, 26, 9): EMA12 - EMA26 (from index 25); signal = EMA9 of the MACD line seeded the same way; histogram
= MACD - signal."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import numpy.typing as npt
from typing_extensions import override

from analytics.indicator_units.base import FloatArray, Indicator, Series
from analytics.indicator_units.ema import EMA, ema, ema_array

MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9


def macd(
    values: Sequence[Decimal], fast: int = MACD_FAST, slow: int = MACD_SLOW, signal: int = MACD_SIGNAL
) -> tuple[Series, Series, Series]:
    """MACD line, signal line and histogram."""
    if fast >= slow:
        raise ValueError(f"the fast period {fast} must be shorter than the slow period {slow}")
    fast_ema, slow_ema = ema(values, fast), ema(values, slow)
    line: Series = [f - s if f is not None and s is not None else None for f, s in zip(fast_ema, slow_ema, strict=True)]
    first = next((i for i, v in enumerate(line) if v is not None), len(line))
    defined = [v for v in line[first:] if v is not None]
    padding: Series = [None] * first
    sig: Series = padding + ema(defined, signal) if defined else [None] * len(values)
    hist: Series = [m - s if m is not None and s is not None else None for m, s in zip(line, sig, strict=True)]
    return line, sig, hist


def macd_arrays(
    values: npt.ArrayLike, fast: int = MACD_FAST, slow: int = MACD_SLOW, signal: int = MACD_SIGNAL
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """:func:`macd` over a float array: line, signal and histogram."""
    if fast >= slow:
        raise ValueError(f"the fast period {fast} must be shorter than the slow period {slow}")
    x = np.asarray(values, dtype=np.float64)
    line = ema_array(x, fast) - ema_array(x, slow)
    first = slow - 1
    sig = np.full(len(x), np.nan)
    if len(x) > first:
        sig[first:] = ema_array(line[first:], signal)
    return line, sig, line - sig


class MACD(Indicator):
    """The MACD line, its signal line and their difference (the histogram)."""

    name = "macd"
    label = "MACD"
    outputs = ("macd", "macd_signal", "macd_hist")
    rank = 40

    def __init__(self, fast: int = MACD_FAST, slow: int = MACD_SLOW, signal: int = MACD_SIGNAL) -> None:
        if fast >= slow:
            raise ValueError(f"the fast period {fast} must be shorter than the slow period {slow}")
        self.fast, self.slow, self.signal = EMA(fast), EMA(slow), EMA(signal)

    @override
    def reset(self) -> None:
        for unit in (self.fast, self.slow, self.signal):
            unit.reset()

    @property
    @override
    def warmup(self) -> int:
        return self.slow.period - 1 + self.signal.period - 1

    @property
    @override
    def history(self) -> int:
        return 5 * self.slow.period + self.signal.period

    @property
    @override
    def initialized(self) -> bool:
        return self.signal.initialized

    @override
    def update(self, value: Decimal) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
        f, s = self.fast.update(value), self.slow.update(value)
        if f is None or s is None:
            return None, None, None
        line = f - s
        sig = self.signal.update(line)
        return line, sig, None if sig is None else line - sig

    @override
    def compute(self, values: Sequence[Decimal]) -> tuple[Series, Series, Series]:
        return macd(values, self.fast.period, self.slow.period, self.signal.period)

    @override
    def compute_array(self, values: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        return macd_arrays(values, self.fast.period, self.slow.period, self.signal.period)
