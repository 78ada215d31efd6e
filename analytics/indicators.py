"""Technical indicators over a candle close series, and their storage as ``IndicatorPoint`` rows.

The pure functions take a sequence of ``Decimal`` closes (oldest first) and return one value per input,
``None`` until the series is long enough (a value is never invented from too little data). Arithmetic is
``Decimal`` with 28 significant digits; stored values are rounded to the model's 12 decimal places.

Conventions (the usual charting ones):
- SMA(n): mean of the last n closes.
- EMA(n): seeded with SMA(n) at index n-1, then ``ema = close * k + prev * (1 - k)``, ``k = 2 / (n + 1)``.
- RSI(n): Wilder's smoothing. The first average gain/loss is the mean of the first n changes (value at index n);
  then ``avg = (prev * (n - 1) + current) / n``. No losses and some gains -> 100; no change at all -> 50.
- MACD(12, 26, 9): EMA12 - EMA26 (from index 25); signal = EMA9 of the MACD line seeded the same way; histogram
  = MACD - signal.
- Bollinger(20, 2): middle = SMA20, upper/lower = middle +/- 2 population standard deviations.

Warm-up: an EMA depends on the whole history, so :func:`update_indicators` loads ``warmup_candles()`` candles
before the first recomputed one: five times the longest EMA period (after 5n steps the seed weighs
``(1 - 2/(n+1))**(5n)``, below 0.005 %), at least 5 x 26 + 9 for MACD and 5 x 14 for RSI. (The usual rule of
thumb, 3n + 26, leaves 0.25 %.) Values then differ from a computation over the whole history by less than that
share of the seed's error, and recomputing the same candles gives the same rows. Loading ~500 candles per
interval is one index range scan and a few milliseconds of arithmetic.

Holes: a hole of more than ``INDICATOR_MAX_GAP_BARS`` missing bars between consecutive stored candles restarts
every indicator (:mod:`analytics.segments`). :func:`update_indicators` computes each segment on its own, so a value
after a hole is ``None`` until the indicator has its own bars there, then equals that of a fresh series starting
after the hole; the vectorised forms below get the same through :func:`analytics.segments.per_segment`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db import connection, transaction

from analytics.decimals import fit_column
from analytics.locks import symbol_lock
from analytics.models import INTERVAL_SECONDS, IndicatorPoint
from analytics.segments import per_segment, segments
from analytics.timeutil import datetime_to_ms

logger = logging.getLogger(__name__)

Series = list[Decimal | None]

RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_PERIOD, BB_WIDTH = 20, Decimal(2)
# Candles recomputed after the first touched one are capped: a replay of old data into a long existing series
# refreshes this many, and the periodic recomputations of newer windows refresh the rest.
MAX_RECOMPUTED = 5000
_HUNDRED = Decimal(100)
_MS = timedelta(milliseconds=1)


# The warm-up history before the first recomputed candle and the recomputed candles, oldest first, in one round
# trip; both halves are index range scans on the candle natural key.
_SERIES = """
SELECT open_time, close, is_target FROM (
    (SELECT open_time, close, false AS is_target FROM analytics_candle
     WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND interval = %(interval)s AND open_time < %(from)s
     ORDER BY open_time DESC LIMIT %(warmup)s)
    UNION ALL
    (SELECT open_time, close, true FROM analytics_candle
     WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND interval = %(interval)s AND open_time >= %(from)s
       AND (%(to)s::timestamptz IS NULL OR open_time <= %(to)s::timestamptz)
     ORDER BY open_time LIMIT %(limit)s)
) series
ORDER BY open_time
"""


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


def warmup_candles(periods: Sequence[int] | None = None) -> int:
    """How many candles before the first recomputed one are loaded (see the module docstring)."""
    longest = max(periods if periods else settings.INDICATOR_MA_PERIODS)
    return max(5 * longest, 5 * MACD_SLOW + MACD_SIGNAL, 5 * RSI_PERIOD, BB_PERIOD)


@dataclass
class IndicatorRow:
    """The indicator values of one candle, rounded for storage (``None`` while the series is too short)."""

    open_time: datetime
    sma: dict[str, Decimal] = field(default_factory=dict)
    ema: dict[str, Decimal] = field(default_factory=dict)
    rsi: Decimal | None = None
    macd: Decimal | None = None
    macd_signal: Decimal | None = None
    macd_hist: Decimal | None = None
    bb_upper: Decimal | None = None
    bb_middle: Decimal | None = None
    bb_lower: Decimal | None = None


def row_from_point(point: IndicatorPoint) -> IndicatorRow:
    """The stored form back as an :class:`IndicatorRow` (for pushes built from the database)."""
    return IndicatorRow(
        open_time=point.open_time,
        sma={k: Decimal(v) for k, v in point.sma.items()},
        ema={k: Decimal(v) for k, v in point.ema.items()},
        rsi=point.rsi,
        macd=point.macd,
        macd_signal=point.macd_signal,
        macd_hist=point.macd_hist,
        bb_upper=point.bb_upper,
        bb_middle=point.bb_middle,
        bb_lower=point.bb_lower,
    )


def _q(value: Decimal | None) -> Decimal | None:
    # Fitted to the numeric(30, 12) columns: a Bollinger band or MACD of extreme prices may exceed them.
    return None if value is None else fit_column(value, 30, 12)


def compute_rows(
    open_times: Sequence[datetime],
    closes: Sequence[Decimal],
    periods: Sequence[int],
    first: int = 0,
    *,
    step: timedelta | None = None,
) -> list[IndicatorRow]:
    """Every indicator for the points of one close series from index ``first`` (the earlier ones only warm up).

    With ``step`` (the interval), each segment between holes of more than ``INDICATOR_MAX_GAP_BARS`` bars is
    computed on its own (:mod:`analytics.segments`): values restart their warm-up after a hole.
    """
    bounds = segments([datetime_to_ms(t) for t in open_times], step // _MS) if step is not None else []
    smas = {str(p): per_segment(sma, closes, bounds, p) for p in periods}
    emas = {str(p): per_segment(ema, closes, bounds, p) for p in periods}
    rsis = per_segment(rsi, closes, bounds)
    line, sig, hist = per_segment(macd, closes, bounds)
    upper, middle, lower = per_segment(bollinger, closes, bounds)
    rows = []
    for i in range(first, len(open_times)):
        t = open_times[i]
        rows.append(
            IndicatorRow(
                open_time=t,
                sma={p: fit_column(v, 30, 12) for p, s in smas.items() if (v := s[i]) is not None},
                ema={p: fit_column(v, 30, 12) for p, s in emas.items() if (v := s[i]) is not None},
                rsi=_q(rsis[i]),
                macd=_q(line[i]),
                macd_signal=_q(sig[i]),
                macd_hist=_q(hist[i]),
                bb_upper=_q(upper[i]),
                bb_middle=_q(middle[i]),
                bb_lower=_q(lower[i]),
            )
        )
    return rows


def update_indicators(
    exchange: str,
    symbol: str,
    interval: str,
    from_open_time: datetime,
    to_open_time: datetime | None = None,
    *,
    locked: bool = False,
) -> list[IndicatorRow]:
    """Recompute and upsert the indicators of the candles from ``from_open_time`` (to ``to_open_time`` or the
    newest, at most ``MAX_RECOMPUTED``) in one bulk statement; return the rows written, oldest first.

    A changed candle changes the indicators of every later candle, hence "to the newest" by default.
    ``locked``: the caller's transaction already holds the symbol's candle lock (saves a round trip).
    """
    if interval not in INTERVAL_SECONDS:
        raise ValueError(f"unknown interval {interval!r}")
    periods = list(settings.INDICATOR_MA_PERIODS)
    with transaction.atomic(savepoint=False):
        if not locked:
            # Serialised per symbol like the candles, so an older snapshot never overwrites a newer computation.
            symbol_lock(exchange, symbol, "candles")
        return _update(exchange, symbol, interval, from_open_time, to_open_time, periods)


def recompute_indicators(exchange: str, symbol: str, interval: str, start: datetime) -> int:
    """Recompute and upsert the indicators of the series from ``start`` to the newest candle, in chunks of
    ``MAX_RECOMPUTED`` candles (one transaction each); return the rows written.

    The history import's recomputation, and ``manage.py recompute_indicators`` for rows stored by an earlier
    version (e.g. values once computed across a hole).
    """
    total = 0
    cursor_time = start
    while True:
        rows = update_indicators(exchange, symbol, interval, cursor_time)
        total += len(rows)
        if len(rows) < MAX_RECOMPUTED:
            return total
        cursor_time = rows[-1].open_time + timedelta(microseconds=1)


def _update(
    exchange: str,
    symbol: str,
    interval: str,
    from_open_time: datetime,
    to_open_time: datetime | None,
    periods: list[int],
) -> list[IndicatorRow]:
    with connection.cursor() as cur:
        cur.execute(
            _SERIES,
            {
                "exchange": exchange,
                "symbol": symbol,
                "interval": interval,
                "from": from_open_time,
                "to": to_open_time,
                "warmup": warmup_candles(periods),
                "limit": MAX_RECOMPUTED,
            },
        )
        points = cur.fetchall()
    first = sum(1 for _, _, is_target in points if not is_target)
    if first == len(points):
        return []
    # The warm-up candles may hold a hole: the segments start over after it, as over the whole history.
    step = timedelta(seconds=INTERVAL_SECONDS[interval])
    rows = compute_rows([t for t, _, _ in points], [c for _, c, _ in points], periods, first=first, step=step)
    _upsert(exchange, symbol, interval, rows)
    logger.debug(
        "indicators updated",
        extra={"exchange": exchange, "symbol": symbol, "interval": interval, "rows": len(rows)},
    )
    return rows


def _upsert(exchange: str, symbol: str, interval: str, rows: list[IndicatorRow]) -> None:
    IndicatorPoint.objects.bulk_create(
        [
            IndicatorPoint(
                exchange=exchange,
                symbol=symbol,
                interval=interval,
                open_time=r.open_time,
                sma={k: str(v) for k, v in r.sma.items()},
                ema={k: str(v) for k, v in r.ema.items()},
                rsi=r.rsi,
                macd=r.macd,
                macd_signal=r.macd_signal,
                macd_hist=r.macd_hist,
                bb_upper=r.bb_upper,
                bb_middle=r.bb_middle,
                bb_lower=r.bb_lower,
            )
            for r in rows
        ],
        update_conflicts=True,
        unique_fields=["exchange", "symbol", "interval", "open_time"],
        update_fields=["sma", "ema", "rsi", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower"],
        batch_size=1000,
    )


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
