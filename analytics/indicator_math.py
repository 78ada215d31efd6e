"""The indicator definitions: exact ``Decimal`` forms over a close series and their vectorised float64 forms.

The pure functions take a sequence of ``Decimal`` closes (oldest first) and return one value per input,
``None`` until the series is long enough (a value is never invented from too little data). Arithmetic is
``Decimal`` with 28 significant digits. The conventions are listed in :mod:`analytics.indicators`, which stores
them. Nothing here touches the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, localcontext

import numpy as np
import numpy.typing as npt

Series = list[Decimal | None]

RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_PERIOD, BB_WIDTH = 20, Decimal(2)

_HUNDRED = Decimal(100)


def sma(values: Sequence[Decimal], period: int) -> Series:
    """Simple moving average; ``None`` for the first ``period - 1`` points."""
    _check_period(period)
    out: Series = [None] * len(values)
    total = Decimal(0)
    for i, v in enumerate(values):
        total += v
        if i >= period:
            total -= values[i - period]
        if i >= period - 1:
            out[i] = total / period
    return out


def ema(values: Sequence[Decimal], period: int) -> Series:
    """Exponential moving average seeded with the SMA of the first ``period`` points."""
    _check_period(period)
    out: Series = [None] * len(values)
    if len(values) < period:
        return out
    k = Decimal(2) / (period + 1)
    prev = sum(values[:period], Decimal(0)) / period
    out[period - 1] = prev
    for i in range(period, len(values)):
        prev = values[i] * k + prev * (1 - k)
        out[i] = prev
    return out


def rsi(values: Sequence[Decimal], period: int = RSI_PERIOD) -> Series:
    """Wilder's relative strength index (0..100); the first value is at index ``period``."""
    _check_period(period)
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


def bollinger(
    values: Sequence[Decimal], period: int = BB_PERIOD, width: Decimal = BB_WIDTH
) -> tuple[Series, Series, Series]:
    """Upper, middle and lower Bollinger bands (population standard deviation).

    Running sums of the values and their squares keep it linear in the series length; they are kept exact with
    80 significant digits, so a value does not depend on where the series starts.
    """
    _check_period(period)
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


def _check_period(period: int) -> None:
    if period < 1:
        raise ValueError(f"period must be at least 1, got {period}")


# ----------------------------------------------------------------------------------------------------------------
# Vectorised forms: the same definitions over float64 arrays, for backtests and model features (one pass over a
# whole history instead of Decimal arithmetic candle by candle). ``NaN`` stands where the functions above return
# ``None``. tests/analytics/test_indicators_vectorised.py checks that both forms agree on real BTCUSDT closes to
# 12 significant digits (the float can hold about 16; a stored 12-decimal price of ~60,000 needs 17). Every value
# depends only on the values up to its index, so appending data never changes an earlier value.
# ----------------------------------------------------------------------------------------------------------------


def _window(values: npt.NDArray[np.float64], period: int) -> npt.NDArray[np.float64]:
    """The last ``period`` values at each index from ``period - 1`` (a strided view, no copy)."""
    return np.lib.stride_tricks.sliding_window_view(values, period)


def _padded(values: npt.NDArray[np.float64], head: int) -> npt.NDArray[np.float64]:
    out = np.full(head + len(values), np.nan)
    out[head:] = values
    return out


def sma_array(values: npt.ArrayLike, period: int) -> npt.NDArray[np.float64]:
    """:func:`sma` over a float array. Each mean is taken over its own window (no running sum whose rounding
    error would grow with the series)."""
    _check_period(period)
    x = np.asarray(values, dtype=np.float64)
    if len(x) < period:
        return np.full(len(x), np.nan)
    return _padded(_window(x, period).mean(axis=1), period - 1)


def ema_array(values: npt.ArrayLike, period: int) -> npt.NDArray[np.float64]:
    """:func:`ema` over a float array: seeded with the SMA of the first ``period`` values.

    The recursion is inherently sequential; a plain loop over Python floats takes ~4 ms for 40,000 values, less
    than numpy's per-call overhead would cost for a step-by-step array version.
    """
    _check_period(period)
    x = np.asarray(values, dtype=np.float64)
    out = np.full(len(x), np.nan)
    if len(x) < period:
        return out
    k = 2.0 / (period + 1)
    prev = float(x[:period].sum()) / period
    rest = x[period:].tolist()
    series = [prev]
    keep = 1.0 - k
    for v in rest:
        prev = v * k + prev * keep
        series.append(prev)
    out[period - 1 :] = series
    return out


def rsi_array(values: npt.ArrayLike, period: int = RSI_PERIOD) -> npt.NDArray[np.float64]:
    """:func:`rsi` over a float array (Wilder's smoothing; the first value at index ``period``)."""
    _check_period(period)
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


def bollinger_arrays(
    values: npt.ArrayLike, period: int = BB_PERIOD, width: float = float(BB_WIDTH)
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """:func:`bollinger` over a float array: upper, middle and lower bands (population standard deviation,
    each window's own, so no cancellation between large running sums)."""
    _check_period(period)
    x = np.asarray(values, dtype=np.float64)
    if len(x) < period:
        empty = np.full(len(x), np.nan)
        return empty, empty.copy(), empty.copy()
    windows = _window(x, period)
    middle = _padded(windows.mean(axis=1), period - 1)
    spread = width * _padded(windows.std(axis=1), period - 1)
    return middle + spread, middle, middle - spread
