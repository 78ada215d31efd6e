"""Bars for backtests: the stored candles of one series over a date range (read through
:func:`analytics.bars.load_candles`), or Binance kline CSV files."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from analytics.bars import Bars, bars_from_rows, load_candles

# The timestamptz resolution: ``open_time <= upper - 1 µs`` is ``open_time < upper``.
_MICROSECOND = timedelta(microseconds=1)
# The archive's kline columns: open time, open, high, low, close, volume, close time, quote volume, trade count, ...
_TRADE_COUNT = 8


def day_range(start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00 UTC, end + 1 day 00:00 UTC)``: the bars of a backtest from ``start`` to ``end`` inclusive."""
    if end < start:
        raise ValueError(f"the end date {end} is before the start date {start}")
    return datetime.combine(start, time(), UTC), datetime.combine(end + timedelta(days=1), time(), UTC)


def load_bars(exchange: str, symbol: str, interval: str, start: date, end: date) -> Bars:
    """The stored candles of (exchange, symbol, interval) from ``start`` to ``end`` (inclusive days), in time
    order; missing bars stay missing. ``digest`` is the sha256 of the stored (open time, open, high, low, close)
    as text, one line per bar (a run's ``bars_hash``)."""
    lower, upper = day_range(start, end)
    return load_candles(exchange, symbol, interval, lower, upper - _MICROSECOND)


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
    """Bars from Binance archive kline CSVs or their zips (headered or not; open times in ms or µs), by open time.

    A kline without a trade (column 9, the trade count, is 0) makes no bar, as in the importer and the live path:
    the bars a backtest reads from the files are those it would read from the database after an import.
    """
    rows: dict[int, tuple[int, str, str, str, str]] = {}
    for path in paths:
        for record in _kline_records(Path(path)):
            if not record or not record[0].strip().isdigit():
                continue  # a header line
            if len(record) > _TRADE_COUNT and record[_TRADE_COUNT].strip() == "0":
                continue  # the archive's empty bar: no candle is stored for it either
            ms = int(record[0])
            if ms >= 10**14:  # microseconds (the archive's spot files from 2025-01-01)
                ms //= 1000
            rows[ms] = (ms, record[1], record[2], record[3], record[4])
    return bars_from_rows(interval, [rows[t] for t in sorted(rows)])
