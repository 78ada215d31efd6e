"""Parsing of data.binance.vision files: names, and the klines/trades/aggTrades CSVs inside the zips.

The archive is inconsistent and the quirks are kept as published: some files have a header line and most do not;
spot files switched from epoch milliseconds to microseconds on 2025-01-01; at outages a bar's ``close_time`` is
shortened and one bar opens off the hour. Prices and quantities stay the archive's decimal strings (PostgreSQL
parses them exactly); times become integer microseconds (klines) or milliseconds (trades, as the live path).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, NamedTuple

KINDS = ("klines", "trades", "aggTrades")

# An epoch time above this is in microseconds: in milliseconds it would be after the year 5138.
_MICROSECONDS_FROM = 10**14
MICROSECONDS_FROM = _MICROSECONDS_FROM
# Times from year 10000 on (in µs; any such time in ms is below 10**14, so read as ms) are refused: Python's
# datetime ends at 9999, and a stored candle no page or API could read back would break them.
TIME_LIMIT = 253_402_300_800_000_000

_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9_]+)-(?P<what>trades|aggTrades|\d+[smhdwM]|1mo)-"
    r"(?P<year>\d{4})-(?P<month>\d{2})(?:-(?P<day>\d{2}))?\.(?P<ext>zip|csv)$"
)


class ParseError(ValueError):
    """A file or row that is not in the archive's format; the message says what and where."""


@dataclass(frozen=True)
class FileName:
    """What an archive file name says: ``BTCUSDT-1h-2021-01.zip``, ``BTCUSDT-trades-2024-08-08.csv``."""

    symbol: str
    kind: str
    interval: str | None
    first_day: date
    monthly: bool

    @property
    def last_day(self) -> date:
        """The last day the file covers (inclusive)."""
        if not self.monthly:
            return self.first_day
        nxt = date(self.first_day.year + self.first_day.month // 12, self.first_day.month % 12 + 1, 1)
        return date.fromordinal(nxt.toordinal() - 1)


def parse_name(name: str) -> FileName:
    """Symbol, kind, interval and period of an archive file name; :class:`ParseError` when it is not one."""
    m = _NAME.match(name)
    if m is None:
        raise ParseError(
            f"{name}: not an archive file name (SYMBOL-INTERVAL-YYYY-MM[-DD].zip or SYMBOL-trades-YYYY-MM[-DD].zip)"
        )
    what = m["what"]
    kind = what if what in ("trades", "aggTrades") else "klines"
    try:
        first = date(int(m["year"]), int(m["month"]), int(m["day"] or 1))
    except ValueError as exc:
        raise ParseError(f"{name}: {exc}") from None
    return FileName(m["symbol"], kind, what if kind == "klines" else None, first, m["day"] is None)


def to_microseconds(value: str) -> int:
    """An epoch time in ms or µs (as the archive writes it) to µs; ValueError outside 1970..9999."""
    n = int(value)
    if not 0 <= n < TIME_LIMIT:
        raise ValueError(f"time {value!r} is outside 1970..9999")
    return n if n >= _MICROSECONDS_FROM else n * 1000


def to_milliseconds(value: str) -> int:
    """An epoch time in ms or µs to ms (µs are floored: the trade table keeps milliseconds, like live trades)."""
    return to_microseconds(value) // 1000


class Kline(NamedTuple):
    """One archived candle; decimals as published."""

    open_time_us: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    close_time_us: int
    quote_volume: str
    trade_count: int


class ArchiveTrade(NamedTuple):
    """One archived trade (``trades``) or aggregate trade (``aggTrades``, keyed by its aggregate id)."""

    trade_id: int
    price: str
    quantity: str
    time_ms: int
    is_buyer_maker: bool


def _is_header(row: list[str]) -> bool:
    return bool(row) and not row[0].strip().lstrip("-").isdigit()


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v == "true":
        return True
    if v == "false":
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _decimal(value: str) -> str:
    # The column parse happens in PostgreSQL; this only refuses what is no number at all (it would fail a whole
    # COPY instead of one row).
    v = value.strip()
    float(v)
    if v.lower() in ("nan", "inf", "-inf", "infinity", "-infinity", "+inf"):
        raise ValueError(f"not a finite number: {value!r}")
    return v


def parse_kline(row: list[str]) -> Kline:
    """One klines row (12 columns; the last five beyond ``trade_count`` are not stored)."""
    if len(row) < 9:
        raise ValueError(f"{len(row)} columns, a kline has 12")
    return Kline(
        to_microseconds(row[0]),
        _decimal(row[1]),
        _decimal(row[2]),
        _decimal(row[3]),
        _decimal(row[4]),
        _decimal(row[5]),
        to_microseconds(row[6]),
        _decimal(row[7]),
        int(row[8]),
    )


def parse_trade(row: list[str]) -> ArchiveTrade:
    """One ``trades`` row: ``id,price,qty,quote_qty,time,is_buyer_maker,is_best_match``."""
    if len(row) < 6:
        raise ValueError(f"{len(row)} columns, a trade has 7")
    return ArchiveTrade(int(row[0]), _decimal(row[1]), _decimal(row[2]), to_milliseconds(row[4]), _bool(row[5]))


def parse_agg_trade(row: list[str]) -> ArchiveTrade:
    """One ``aggTrades`` row: ``agg_id,price,qty,first_id,last_id,time,is_buyer_maker,is_best_match``."""
    if len(row) < 7:
        raise ValueError(f"{len(row)} columns, an aggregate trade has 8")
    return ArchiveTrade(int(row[0]), _decimal(row[1]), _decimal(row[2]), to_milliseconds(row[5]), _bool(row[6]))


PARSERS = {"klines": parse_kline, "trades": parse_trade, "aggTrades": parse_agg_trade}


def csv_rows(path: Path) -> Iterator[list[str]]:
    """The CSV rows of an archive file (a zip holding one CSV, or the CSV itself), header line skipped."""
    if path.suffix == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise ParseError(f"{path.name}: not a zip file ({exc})") from None
        with archive:
            members = [n for n in archive.namelist() if n.endswith(".csv")]
            if len(members) != 1:
                raise ParseError(f"{path.name}: expected one CSV in the zip, found {len(members)}")
            with archive.open(members[0]) as raw:
                yield from _rows(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
    else:
        with path.open(encoding="utf-8", newline="") as text:
            yield from _rows(text)


def csv_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    """The CSV bytes of an archive file (zip or CSV) without its header line, in chunks (for a server-side COPY)."""
    if path.suffix == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise ParseError(f"{path.name}: not a zip file ({exc})") from None
        with archive:
            members = [n for n in archive.namelist() if n.endswith(".csv")]
            if len(members) != 1:
                raise ParseError(f"{path.name}: expected one CSV in the zip, found {len(members)}")
            with archive.open(members[0]) as raw:
                yield from _chunks(raw, size)
    else:
        with path.open("rb") as raw:
            yield from _chunks(raw, size)


def _chunks(raw: IO[bytes], size: int) -> Iterator[bytes]:
    first = raw.readline()
    if first and not first.lstrip()[:1].isdigit():
        first = b""  # a header line
    if first:
        yield first
    while chunk := raw.read(size):
        yield chunk


def _rows(text: io.TextIOBase | io.TextIOWrapper) -> Iterator[list[str]]:
    reader = csv.reader(text)
    first = next(reader, None)
    if first is None:
        return
    if not _is_header(first):
        yield first
    for row in reader:
        if row:
            yield row
