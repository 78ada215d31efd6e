"""The one read path for stored candle series: every other app reads a symbol's candles through this module.

:func:`load_candles` gives a :class:`Bars` (float64 columns and a digest of the stored text) for backtests and
model features; :func:`load_closes` gives the exact ``Decimal`` closes the stored indicators are computed from;
:func:`closes_at` and :func:`has_candles` answer the two point questions the other apps ask (the close of given
bars, whether a series exists). No other module outside ``analytics`` runs SQL on ``analytics_candle`` or uses the
``Candle`` model (tests/foundation/test_architecture.py checks it).
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import connection

from analytics import indicator_units
from analytics.models import INTERVAL_SECONDS, Candle
from analytics.segments import Bounds, per_segment, segments

FloatArray = npt.NDArray[np.float64]
YEAR_SECONDS = 365 * 86_400
_CANDLE = Candle._meta.db_table


@dataclass
class Bars:
    """One series of candles, oldest first; ``open_time`` is epoch milliseconds, prices are float64.

    ``volume`` is loaded on request (``None`` otherwise). ``digest`` identifies the stored values the bars came
    from: the sha256 of the loaded columns as stored text, one line per bar (:func:`bars_from_rows`), so a
    backtest or a model can say exactly which data it used. Indicator results are memoised per bars object: a
    parameter sweep computes each (indicator, period) once however many combinations use it.
    """

    interval: str
    open_time: npt.NDArray[np.int64]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray | None = None
    digest: str = ""
    _cache: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.interval not in INTERVAL_SECONDS:
            raise ValueError(f"unknown interval {self.interval!r}")
        n = len(self.open_time)
        columns = (self.open, self.high, self.low, self.close, *(() if self.volume is None else (self.volume,)))
        if not all(len(a) == n for a in columns):
            raise ValueError("bars: every column must have the same length")

    def __len__(self) -> int:
        return len(self.open_time)

    def __getitem__(self, rows: builtins.slice) -> Bars:
        """The bars ``[rows]`` (views of the columns, no digest, their own indicator cache)."""
        return self._view(rows, "")

    def slice(self, start: int, stop: int | None = None) -> Bars:
        """Bars ``[start:stop]`` (a view that keeps the digest of the data it was cut from)."""
        return self._view(slice(start, stop), self.digest)

    def _view(self, rows: builtins.slice, digest: str) -> Bars:
        volume = None if self.volume is None else self.volume[rows]
        return Bars(
            self.interval, self.open_time[rows], self.open[rows], self.high[rows], self.low[rows], self.close[rows],
            volume, digest,
        )  # fmt: skip

    def upto(self, last_open_time_ms: int) -> Bars:
        """The bars with ``open_time <= last_open_time_ms`` (what the database held at that time)."""
        return self[: int(np.searchsorted(self.open_time, last_open_time_ms, side="right"))]

    @property
    def step_ms(self) -> int:
        """The interval in milliseconds."""
        return INTERVAL_SECONDS[self.interval] * 1000

    @property
    def bars_per_year(self) -> float:
        """365 x 86,400 / interval seconds (the annualisation factor of the backtest metrics)."""
        return YEAR_SECONDS / INTERVAL_SECONDS[self.interval]

    def segments(self) -> Bounds:
        """The ``[start, stop)`` ranges of bars between holes of more than ``INDICATOR_MAX_GAP_BARS`` bars."""
        key = ("segments",)
        if key not in self._cache:
            self._cache[key] = segments(self.open_time, self.step_ms)
        return list(self._cache[key])

    def indicator(self, name: str, *args: Any) -> Any:
        """The float64 form of the registered indicator ``name`` with parameters ``args``
        (:mod:`analytics.indicator_units`) over the closes, on each segment between long holes (as the stored
        indicators are computed: nothing is carried across a hole), computed once per bars object."""
        key = (name, *args)
        if key not in self._cache:
            unit = indicator_units.get(name)(*args)
            self._cache[key] = per_segment(unit.compute_array, self.close, self.segments())
        return self._cache[key]


def bars_from_rows(interval: str, rows: Iterable[Sequence[object]], *, volume: bool | None = None) -> Bars:
    """Bars from ``(open_time_ms, open, high, low, close[, volume])`` rows with decimal text values, oldest first
    (``volume``: whether the rows hold it; by default, whether they have six columns).

    ``digest`` is the sha256 of the rows as given, ``",".join`` of each row's text and a newline: with volume for
    a model's ``data_hash``, without it for a backtest's ``bars_hash`` (each as it was first defined, so the
    hashes stored on earlier runs and models still match the same data).
    """
    rows = list(rows)
    digest = hashlib.sha256()
    for row in rows:
        digest.update((",".join(map(str, row)) + "\n").encode())
    width = (6 if volume else 5) if volume is not None or not rows else len(rows[0])
    if width not in (5, 6):
        raise ValueError(f"bars: expected 5 or 6 columns per row, got {width}")
    columns: list[tuple[object, ...]] = list(zip(*rows, strict=True)) if rows else [()] * width
    prices = [np.array(col, dtype=np.float64) for col in columns[1:]]
    return Bars(
        interval,
        np.array(columns[0], dtype=np.int64),
        prices[0],
        prices[1],
        prices[2],
        prices[3],
        volume=prices[4] if width == 6 else None,
        digest=digest.hexdigest(),
    )


def load_candles(
    exchange: str,
    symbol: str,
    interval: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    last: int | None = None,
    volume: bool = False,
) -> Bars:
    """The stored candles of (exchange, symbol, interval) with ``start <= open_time <= end`` (either end open),
    oldest first; missing bars stay missing. ``last``: only the newest ``last`` of them. ``volume``: load the
    volume too (it is then part of the digest, see :func:`bars_from_rows`). One index range scan."""
    if interval not in INTERVAL_SECONDS:
        raise ValueError(f"unknown interval {interval!r}")
    where = ["exchange = %s", "symbol = %s", "interval = %s"]
    params: list[Any] = [exchange, symbol, interval]
    if start is not None:
        where.append("open_time >= %s")
        params.append(start)
    if end is not None:
        where.append("open_time <= %s")
        params.append(end)
    order = "ORDER BY open_time"
    if last is not None:
        order += " DESC LIMIT %s"  # the newest `last`, put back in time order below
        params.append(last)
    # Decimal text, not numeric: the digest is over the stored values exactly as PostgreSQL prints them.
    sql = (
        "SELECT (extract(epoch FROM open_time) * 1000)::bigint, open::text, high::text, low::text, close::text"
        + (", volume::text" if volume else "")
        + f" FROM {_CANDLE} WHERE {' AND '.join(where)} {order}"
    )
    with connection.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    if last is not None:
        rows.reverse()
    return bars_from_rows(interval, rows, volume=volume)


# The warm-up history before the first recomputed candle and the recomputed candles, oldest first, in one round
# trip; both halves are index range scans on the candle natural key.
_CLOSES = f"""
SELECT open_time, close, is_target FROM (
    (SELECT open_time, close, false AS is_target FROM {_CANDLE}
     WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND interval = %(interval)s AND open_time < %(from)s
     ORDER BY open_time DESC LIMIT %(warmup)s)
    UNION ALL
    (SELECT open_time, close, true FROM {_CANDLE}
     WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND interval = %(interval)s AND open_time >= %(from)s
       AND (%(to)s::timestamptz IS NULL OR open_time <= %(to)s::timestamptz)
     ORDER BY open_time LIMIT %(limit)s)
) series
ORDER BY open_time
"""


@dataclass(frozen=True)
class Closes:
    """Exact closes of one series, oldest first: ``first`` warm-up candles, then the requested ones."""

    open_time: list[datetime]
    close: list[Decimal]
    first: int


def load_closes(
    exchange: str, symbol: str, interval: str, start: datetime, end: datetime | None, *, warmup: int, limit: int
) -> Closes:
    """The exact closes of up to ``limit`` candles from ``start`` (to ``end`` inclusive, or the newest), after
    the ``warmup`` candles before ``start``: what the stored indicators are computed from."""
    with connection.cursor() as cur:
        cur.execute(
            _CLOSES,
            {
                "exchange": exchange,
                "symbol": symbol,
                "interval": interval,
                "from": start,
                "to": end,
                "warmup": warmup,
                "limit": limit,
            },
        )
        points = cur.fetchall()
    first = sum(1 for _, _, is_target in points if not is_target)
    return Closes([t for t, _, _ in points], [c for _, c, _ in points], first)


def closes_at(exchange: str, symbol: str, interval: str, open_times: Iterable[datetime]) -> dict[datetime, Decimal]:
    """The stored close of each of the given bars that has a candle (a bar without a trade has none)."""
    return dict(
        Candle.objects.filter(
            exchange=exchange, symbol=symbol, interval=interval, open_time__in=list(open_times)
        ).values_list("open_time", "close")
    )


def has_candles(exchange: str, symbol: str, interval: str) -> bool:
    """Whether any candle of the series is stored (one index probe)."""
    return Candle.objects.filter(exchange=exchange, symbol=symbol, interval=interval).exists()
