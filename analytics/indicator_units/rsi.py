"""RSI(n): Wilder's smoothing. The first average gain/loss is the mean of the first n changes (value at index n);
then ``avg = (prev * (n - 1) + current) / n``. No losses and some gains -> 100; no change at all -> 50."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import numpy.typing as npt
from typing_extensions import override

from analytics.indicator_units.base import FloatArray, PeriodIndicator, Series, check_period

RSI_PERIOD = 14
_HUNDRED = Decimal(100)


def rsi(values: Sequence[Decimal], period: int = RSI_PERIOD) -> Series:
    """Wilder's relative strength index (0..100); the first value is at index ``period``."""
    check_period(period)
    out: Series = [None] * len(values)
    if len(values) <= period:
        return out
    changes = [values[i] - values[i - 1] for i in range(1, len(values))]
    gain = sum((c for c in changes[:period] if c > 0), Decimal(0)) / period
    loss = sum((-c for c in changes[:period] if c < 0), Decimal(0)) / period
    out[period] = _rsi_value(gain, loss)
    for i in range(period, len(changes)):
        c = changes[i]
        gain = (gain * (period - 1) + max(c, Decimal(0))) / period
        loss = (loss * (period - 1) + max(-c, Decimal(0))) / period
        out[i + 1] = _rsi_value(gain, loss)
    return out


def _rsi_value(gain: Decimal, loss: Decimal) -> Decimal:
    if loss == 0:
        # A flat series has no strength either way; only gains means maximal strength.
        return _HUNDRED if gain > 0 else Decimal(50)
    return _HUNDRED - _HUNDRED / (1 + gain / loss)


def rsi_array(values: npt.ArrayLike, period: int = RSI_PERIOD) -> npt.NDArray[np.float64]:
    """:func:`rsi` over a float array (Wilder's smoothing; the first value at index ``period``)."""
    check_period(period)
    x = np.asarray(values, dtype=np.float64)
    out = np.full(len(x), np.nan)
    if len(x) <= period:
        return out
    changes = np.diff(x)
    gains = np.where(changes > 0, changes, 0.0).tolist()
    losses = np.where(changes < 0, -changes, 0.0).tolist()
    gain = sum(gains[:period]) / period
    loss = sum(losses[:period]) / period
    result = [_rsi_float(gain, loss)]
    keep = period - 1
    for g, l_ in zip(gains[period:], losses[period:], strict=True):
        gain = (gain * keep + g) / period
        loss = (loss * keep + l_) / period
        result.append(_rsi_float(gain, loss))
    out[period:] = result
    return out


def _rsi_float(gain: float, loss: float) -> float:
    if loss == 0:
        return 100.0 if gain > 0 else 50.0
    return 100.0 - 100.0 / (1.0 + gain / loss)


class RSI(PeriodIndicator):
    """Wilder's relative strength index (0..100) over ``period`` changes."""

    name = "rsi"
    label = "RSI"
    outputs = ("rsi",)
    rank = 30

    def __init__(self, period: int = RSI_PERIOD) -> None:
        super().__init__(period)

    @override
    def reset(self) -> None:
        self._last: Decimal | None = None
        self._changes: list[Decimal] = []
        self._gain: Decimal | None = None
        self._loss = Decimal(0)

    @property
    @override
    def warmup(self) -> int:
        return self.period

    @property
    @override
    def history(self) -> int:
        return 5 * self.period

    @property
    @override
    def initialized(self) -> bool:
        return self._gain is not None

    @override
    def update(self, value: Decimal) -> Decimal | None:
        last, self._last = self._last, value
        if last is None:
            return None
        c = value - last
        if self._gain is None:
            self._changes.append(c)
            if len(self._changes) < self.period:
                return None
            self._gain = sum((x for x in self._changes if x > 0), Decimal(0)) / self.period
            self._loss = sum((-x for x in self._changes if x < 0), Decimal(0)) / self.period
            return _rsi_value(self._gain, self._loss)
        self._gain = (self._gain * (self.period - 1) + max(c, Decimal(0))) / self.period
        self._loss = (self._loss * (self.period - 1) + max(-c, Decimal(0))) / self.period
        return _rsi_value(self._gain, self._loss)

    @override
    def compute(self, values: Sequence[Decimal]) -> Series:
        return rsi(values, self.period)

    @override
    def compute_array(self, values: npt.ArrayLike) -> FloatArray:
        return rsi_array(values, self.period)
