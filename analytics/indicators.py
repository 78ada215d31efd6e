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
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from analytics.bars import load_closes
from analytics.decimals import fit_column
from analytics.indicator_math import (
    BB_PERIOD,
    BB_WIDTH,
    MACD_FAST,
    MACD_SIGNAL,
    MACD_SLOW,
    RSI_PERIOD,
    Series,
    bollinger,
    bollinger_arrays,
    ema,
    ema_array,
    macd,
    macd_arrays,
    rsi,
    rsi_array,
    sma,
    sma_array,
)
from analytics.locks import symbol_lock
from analytics.models import INTERVAL_SECONDS, IndicatorPoint
from analytics.segments import per_segment, segments
from analytics.timeutil import datetime_to_ms

logger = logging.getLogger(__name__)

# The definitions live in analytics.indicator_math; importing them from here keeps working.
__all__ = [
    "BB_PERIOD",
    "BB_WIDTH",
    "MACD_FAST",
    "MACD_SIGNAL",
    "MACD_SLOW",
    "RSI_PERIOD",
    "IndicatorRow",
    "Series",
    "bollinger",
    "bollinger_arrays",
    "compute_rows",
    "ema",
    "ema_array",
    "macd",
    "macd_arrays",
    "recompute_indicators",
    "row_from_point",
    "rsi",
    "rsi_array",
    "sma",
    "sma_array",
    "update_indicators",
    "warmup_candles",
]

# Candles recomputed after the first touched one are capped: a replay of old data into a long existing series
# refreshes this many, and the periodic recomputations of newer windows refresh the rest.
MAX_RECOMPUTED = 5000
_MS = timedelta(milliseconds=1)


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
    series = load_closes(
        exchange,
        symbol,
        interval,
        from_open_time,
        to_open_time,
        warmup=warmup_candles(periods),
        limit=MAX_RECOMPUTED,
    )
    if series.first == len(series.open_time):
        return []
    # The warm-up candles may hold a hole: the segments start over after it, as over the whole history.
    step = timedelta(seconds=INTERVAL_SECONDS[interval])
    rows = compute_rows(series.open_time, series.close, periods, first=series.first, step=step)
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
