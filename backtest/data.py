"""Bars for backtests: the stored candles of one series over a date range, or Binance kline CSV files."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
from django.db import connection

from backtest.engine import Bars

# Both ends are days (UTC): from 00:00 of ``start`` up to, not including, 00:00 of the day after ``end``.
_BARS = """
SELECT (extract(epoch FROM open_time) * 1000)::bigint, open::text, high::text, low::text, close::text
FROM analytics_candle
WHERE exchange = %s AND symbol = %s AND interval = %s AND open_time >= %s AND open_time < %s
ORDER BY open_time
"""


def day_range(start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00 UTC, end + 1 day 00:00 UTC)``: the bars of a backtest from ``start`` to ``end`` inclusive."""
    if end < start:
        raise ValueError(f"the end date {end} is before the start date {start}")
    return datetime.combine(start, time(), UTC), datetime.combine(end + timedelta(days=1), time(), UTC)


def load_bars(exchange: str, symbol: str, interval: str, start: date, end: date) -> Bars:
    """The stored candles of (exchange, symbol, interval) from ``start`` to ``end`` (inclusive days), in time
    order; missing bars stay missing. ``digest`` is the sha256 of the stored values as text, one line per bar."""
    lower, upper = day_range(start, end)
    with connection.cursor() as cur:
        cur.execute(_BARS, [exchange, symbol, interval, lower, upper])
        rows = cur.fetchall()
    return bars_from_rows(interval, rows)


def bars_from_rows(interval: str, rows: Iterable[tuple[int, str, str, str, str]]) -> Bars:
    """Bars from (open_time_ms, open, high, low, close) rows with decimal text prices, oldest first."""
    rows = list(rows)
    digest = hashlib.sha256()
    for row in rows:
        digest.update((",".join(map(str, row)) + "\n").encode())
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    return Bars(
        interval=interval,
        open_time=np.array(columns[0], dtype=np.int64),
        open=np.array(columns[1], dtype=np.float64),
        high=np.array(columns[2], dtype=np.float64),
        low=np.array(columns[3], dtype=np.float64),
        close=np.array(columns[4], dtype=np.float64),
        digest=digest.hexdigest(),
    )


def _kline_records(path: Path) -> Iterator[list[str]]:
    """The CSV rows of a kline file: a plain CSV, or an archive zip holding one."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as raw:
                    yield from csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        return
    with open(path, newline="") as fh:
        yield from csv.reader(fh)


def bars_from_kline_csv(paths: Iterable[Path], interval: str) -> Bars:
    """Bars from Binance archive kline CSVs or their zips (headered or not; open times in ms or µs), by open time."""
    rows: dict[int, tuple[int, str, str, str, str]] = {}
    for path in paths:
        for record in _kline_records(Path(path)):
            if not record or not record[0].strip().isdigit():
                continue  # a header line
            ms = int(record[0])
            if ms >= 10**14:  # microseconds (the archive's spot files from 2025-01-01)
                ms //= 1000
            rows[ms] = (ms, record[1], record[2], record[3], record[4])
    return bars_from_rows(interval, [rows[t] for t in sorted(rows)])
