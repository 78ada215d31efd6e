"""The base of every indicator unit, and the helpers the units share.

A unit is one indicator with its parameters (nautilus_trader's shape): :meth:`Indicator.update` takes the closes
one at a time and returns the exact ``Decimal`` value(s) of the newest (``None`` while warming up),
:meth:`Indicator.reset` forgets them, :attr:`Indicator.initialized` says whether values come out yet. The same
definition over a whole series is :meth:`Indicator.compute` (exact, what is stored) and
:meth:`Indicator.compute_array` (float64, for backtests and model features); both give one value per input, or a
tuple of such for an indicator with several outputs. ``tests/analytics/test_indicator_units.py`` checks that the
streaming and batch exact forms agree to the digit and ``test_indicators_vectorised.py`` the float forms.

A unit declares its names: ``name`` (the registry key, ``Bars.indicator(name, ...)``), ``outputs`` (one stored
``IndicatorPoint`` column and wire field per output, in the order ``compute`` returns them), or, with
``per_period``, one value per ``INDICATOR_MA_PERIODS`` period stored under the period in the JSON column ``name``;
``label`` names it for people; ``rank`` orders the columns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from decimal import Decimal
from typing import ClassVar

import numpy as np
import numpy.typing as npt

Series = list[Decimal | None]
#: the newest value(s) of a streaming unit: one value, or one per output
Value = Decimal | None | tuple[Decimal | None, ...]
FloatArray = npt.NDArray[np.float64]


class Indicator(ABC):
    """One indicator with its parameters: streaming exact updates, and the batch exact and float64 forms."""

    name: ClassVar[str]
    label: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]
    per_period: ClassVar[bool] = False
    #: where the indicator's columns come in a stored row, a push and an API item (smaller first)
    rank: ClassVar[int] = 100

    @property
    @abstractmethod
    def warmup(self) -> int:
        """How many inputs come before the first value (the index of the first value)."""

    @property
    def history(self) -> int:
        """How many candles before a recomputed one to load so that its value matches the whole history's (the
        first value's window; more for a recursive indicator, whose seed fades only gradually)."""
        return self.warmup + 1

    @abstractmethod
    def update(self, value: Decimal) -> Value:
        """Take the next close; return the value(s) at it (``None`` until initialized)."""

    @abstractmethod
    def reset(self) -> None:
        """Forget every close taken: the next :meth:`update` starts a fresh series."""

    @property
    @abstractmethod
    def initialized(self) -> bool:
        """Whether the unit has taken enough closes for a value."""

    @abstractmethod
    def compute(self, values: Sequence[Decimal]) -> Series | tuple[Series, ...]:
        """The exact values over a whole series, oldest first (what :meth:`update` would give one by one)."""

    @abstractmethod
    def compute_array(self, values: npt.ArrayLike) -> FloatArray | tuple[FloatArray, ...]:
        """The same definition over float64 (``NaN`` where :meth:`compute` gives ``None``)."""

    @property
    def key(self) -> str:
        """The JSON key of a ``per_period`` unit's value (its period), ``""`` otherwise."""
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key})"


class PeriodIndicator(Indicator):
    """A unit over a window of ``period`` closes: its first value at index ``period - 1`` by default, and for a
    ``per_period`` unit the JSON key is the period."""

    def __init__(self, period: int) -> None:
        check_period(period)
        self.period = period
        self.reset()

    @property
    def warmup(self) -> int:
        """The first value's index: ``period - 1``."""
        return self.period - 1

    @property
    def key(self) -> str:
        """The period, for a ``per_period`` unit."""
        return str(self.period) if self.per_period else ""


def check_period(period: int) -> None:
    """A period is a positive number of bars."""
    if period < 1:
        raise ValueError(f"period must be at least 1, got {period}")


def window(values: FloatArray, period: int) -> FloatArray:
    """The last ``period`` values at each index from ``period - 1`` (a strided view, no copy)."""
    return np.lib.stride_tricks.sliding_window_view(values, period)


def padded(values: FloatArray, head: int) -> FloatArray:
    """``values`` after ``head`` NaNs."""
    out = np.full(head + len(values), np.nan)
    out[head:] = values
    return out
