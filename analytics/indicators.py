"""Technical indicators over a candle close series, and their storage as ``IndicatorPoint`` rows.

Each indicator takes a sequence of ``Decimal`` closes (oldest first) and returns one value per input, ``None``
until the series is long enough (a value is never invented from too little data). Arithmetic is ``Decimal`` with
28 significant digits; stored values are rounded to the model's 12 decimal places.

The indicators are the units of the registry (:mod:`analytics.indicator_units`, one module each, with its
conventions; docs/ADDING_AN_INDICATOR.md): this module computes every stored unit over a series and stores the
values in the columns the units declare.

Warm-up: an EMA depends on the whole history, so :func:`update_indicators` loads ``warmup_candles()`` candles
before the first recomputed one, the longest ``history`` of the stored units: five times the longest EMA period
(after 5n steps the seed weighs ``(1 - 2/(n+1))**(5n)``, below 0.005 %), at least 5 x 26 + 9 for MACD and 5 x 14
for RSI. (The usual rule of
thumb, 3n + 26, leaves 0.25 %.) Values then differ from a computation over the whole history by less than that
share of the seed's error, and recomputing the same candles gives the same rows. Loading ~500 candles per
interval is one index range scan and a few milliseconds of arithmetic.

Holes: a hole of more than ``INDICATOR_MAX_GAP_BARS`` missing bars between consecutive stored candles restarts
every indicator (:mod:`analytics.segments`). :func:`update_indicators` computes each segment on its own, so a value
after a hole is ``None`` until the indicator has its own bars there, then equals that of a fresh series starting
after the hole; the vectorised forms get the same through :func:`analytics.segments.per_segment`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction

from analytics import indicator_units
from analytics.bars import load_closes
from analytics.decimals import fit_column
from analytics.indicator_units.base import Series
from analytics.indicator_units.bollinger import BB_PERIOD, BB_WIDTH, bollinger, bollinger_arrays
from analytics.indicator_units.ema import ema, ema_array
from analytics.indicator_units.macd import MACD_FAST, MACD_SIGNAL, MACD_SLOW, macd, macd_arrays
from analytics.indicator_units.rsi import RSI_PERIOD, rsi, rsi_array
from analytics.indicator_units.sma import sma, sma_array
from analytics.locks import symbol_lock
from analytics.models import INTERVAL_SECONDS, IndicatorPoint
from analytics.segments import per_segment, segments
from analytics.timeutil import datetime_to_ms

logger = logging.getLogger(__name__)

# The definitions live in the units of analytics.indicator_units; importing them from here keeps working.
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
    return indicator_units.history(periods if periods else settings.INDICATOR_MA_PERIODS)


@dataclass
class IndicatorRow:
    """The indicator values of one candle, rounded for storage, by stored column (``indicator_units.columns()``):
    a value or ``None`` while the series is too short, or for a ``per_period`` unit a dict period -> value holding
    the periods that have one. ``row.rsi`` reads the column ``rsi``."""

    open_time: datetime
    values: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, column: str) -> Any:
        values = self.__dict__.get("values", {})  # not self.values: no recursion before __init__ has run
        if column in values:
            return values[column]
        raise AttributeError(f"{type(self).__name__} has no column {column!r}")


def row_from_point(point: IndicatorPoint) -> IndicatorRow:
    """The stored form back as an :class:`IndicatorRow` (for pushes built from the database)."""
    values: dict[str, Any] = {}
    for column in indicator_units.columns():
        stored = getattr(point, column)
        values[column] = {k: Decimal(v) for k, v in stored.items()} if isinstance(stored, dict) else stored
    return IndicatorRow(point.open_time, values)


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
    rows = [IndicatorRow(open_times[i], indicator_units.empty_values()) for i in range(first, len(open_times))]
    for unit in indicator_units.stored_units(periods):
        result = per_segment(unit.compute, closes, bounds)
        outputs = result if isinstance(result, tuple) else (result,)
        if unit.per_period:  # one JSON column, the periods that have a value so far
            for row, v in zip(rows, outputs[0][first:], strict=True):
                if v is not None:
                    row.values[unit.name][unit.key] = fit_column(v, 30, 12)
            continue
        for column, series in zip(unit.outputs, outputs, strict=True):
            for row, v in zip(rows, series[first:], strict=True):
                row.values[column] = _q(v)
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
    columns = indicator_units.columns()
    IndicatorPoint.objects.bulk_create(
        [
            IndicatorPoint(
                exchange=exchange,
                symbol=symbol,
                interval=interval,
                open_time=r.open_time,
                **{
                    c: {k: str(v) for k, v in r.values[c].items()} if isinstance(r.values[c], dict) else r.values[c]
                    for c in columns
                },
            )
            for r in rows
        ],
        update_conflicts=True,
        unique_fields=["exchange", "symbol", "interval", "open_time"],
        update_fields=columns,
        batch_size=1000,
    )
