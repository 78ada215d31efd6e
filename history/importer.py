"""Storage of archived klines and trades, idempotently, with the live path's own code where there is one.

Klines: a batch of files of one series is COPYed as is into a staging table (PostgreSQL parses the CSV) and merged
as candles of its interval with ``source = 'imported'`` in one transaction; at the end of the import the larger
intervals are rolled up from them by the live path's rollup statement (:func:`analytics.candles.rollup_sql`) with
``source = 'rollup'``. Trades and aggTrades: each file is COPYed as is into a staging table and stored by the live
path's idempotent insert (:func:`analytics.storage.insert_trades_sql`, the statement
:func:`analytics.storage.store_trades` runs), then their candles are recomputed by
:func:`analytics.candles.recompute_candles`, exactly as live trades get theirs. A file with a row PostgreSQL
refuses is parsed in Python instead (bad rows skipped and counted, the rest stored the same way).

Which wins where live and imported candles meet (``analytics.models.CandleSource``): an imported kline is the
exchange's own complete and final record of the bar, while a live candle holds only the trades ingest saw (a bar
it joined halfway, an outage). So imported klines overwrite any candle of their key, rollups of imported klines
overwrite live candles but never imported ones, and the live recomputation never overwrites either.

Re-running changes nothing: an upsert whose values equal the stored row is skipped (``IS DISTINCT FROM``), so
counts, values and even ``updated_at`` stay. Gaps (missing bars, missing trade ids) are counted and reported,
never filled in. A row that does not parse is skipped, counted and logged with its file and line (bad input never
stops an import); a file refused by its checksum is never opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import DatabaseError, DataError, IntegrityError, connection, transaction

from analytics import candles as candle_logic
from analytics import indicators as indicator_logic
from analytics.locks import symbol_lock
from analytics.models import INTERVAL_SECONDS, CandleSource
from analytics.storage import insert_trades_sql, store_trades
from analytics.timeutil import EPOCH, bucket_start
from cryptoproject.timeutil import us_to_datetime
from history.parse import MICROSECONDS_FROM as _MICROSECONDS_FROM
from history.parse import PARSERS, TIME_LIMIT, ArchiveTrade, ParseError, csv_chunks, csv_rows
from ingest.records import TradeRecord

logger = logging.getLogger(__name__)

EXCHANGE = "binance"

# The klines of one batch of files: each file's CSV text COPYed as is (server-side parsing), all twelve columns; a file
# with a row PostgreSQL refuses is parsed in Python instead and its good rows written in the same layout (times
# already in µs). NaN is a valid numeric but no price: refused like a malformed row. The table lives as long as the
# session and is emptied at every commit.
KLINE_RAW = "history_kline_raw"
_NOT_NAN = " AND ".join(f"{c} <> 'NaN'" for c in ("open", "high", "low", "close", "volume", "quote_volume"))
# As history.parse.to_microseconds: times from 1970 to 9999.
_IN_TIME = " AND ".join(f"{c} >= 0 AND {c} < {TIME_LIMIT}" for c in ("open_raw", "close_raw"))
_CREATE_RAW = f"""
CREATE TEMP TABLE IF NOT EXISTS {KLINE_RAW} (
    open_raw bigint NOT NULL,
    open numeric(30, 12) NOT NULL,
    high numeric(30, 12) NOT NULL,
    low numeric(30, 12) NOT NULL,
    close numeric(30, 12) NOT NULL,
    volume numeric(38, 18) NOT NULL,
    close_raw bigint NOT NULL,
    quote_volume numeric(38, 18) NOT NULL,
    trade_count bigint NOT NULL,
    taker_buy_volume text,
    taker_buy_quote_volume text,
    ignore text,
    CHECK ({_NOT_NAN} AND {_IN_TIME})
) ON COMMIT DELETE ROWS
"""
_COPY_RAW = f"COPY {KLINE_RAW} FROM STDIN WITH (FORMAT csv)"
_COPY_PARSED = (
    f"COPY {KLINE_RAW} (open_raw, open, high, low, close, volume, close_raw, quote_volume, trade_count) FROM STDIN"
)
# ms or µs, as in history.parse.to_microseconds.
_RAW_NORMALISED = f"""(
    SELECT CASE WHEN open_raw >= {_MICROSECONDS_FROM} THEN open_raw ELSE open_raw * 1000 END AS open_us,
           open, high, low, close, volume,
           CASE WHEN close_raw >= {_MICROSECONDS_FROM} THEN close_raw ELSE close_raw * 1000 END AS close_us,
           quote_volume, trade_count
    FROM {KLINE_RAW}
) s"""
# Rows, first and last bar, and the holes of two steps or more (the gaps) and repeated bars, of what was COPYed.
_RAW_STATS = (
    f"SELECT count(*), min(open_us), max(open_us), count(*) FILTER (WHERE trade_count = 0) FROM {_RAW_NORMALISED}"
)


def _neighbours_sql(key: str, relation: str, where: str) -> str:
    """``(previous, this)`` pairs of ``key`` in order over ``relation`` where ``where`` holds: holes, repeats."""
    return f"""
SELECT prev, {key} FROM (
    SELECT {key}, lag({key}) OVER (ORDER BY {key}) AS prev FROM {relation}
) g
WHERE {where}
ORDER BY {key}
"""


_RAW_GAPS = _neighbours_sql("open_us", _RAW_NORMALISED, "open_us - prev >= %(two_steps)s OR open_us = prev")

# DISTINCT ON: a bar repeated in a file or a batch keeps its last row (ctid: the order rows were COPYed in, in one
# statement's snapshot of a temp table); without repeats (the archive has none) the sort is skipped. vwap as the
# live candles define it; a bar without volume (an outage bar) takes its close. MERGE rather than INSERT .. ON
# CONFLICT: a third faster on this load (no speculative insertion per row), safe because every writer of a symbol's
# candles holds its advisory lock (analytics.locks). A row equal to the stored one is left alone (IS DISTINCT
# FROM), so a re-run changes nothing, not even updated_at. A kline without a trade (the archive's outage bars:
# OHLC the previous close, volume 0) is not stored: a candle exists only for an interval with a trade, as on the
# live path, so imported and live candles of the same trades are the same series (README, "Live vs imported").
_MERGE = f"""
MERGE INTO analytics_candle c
USING (
    SELECT DISTINCT ON (open_us)
           %(exchange)s::varchar AS exchange, %(symbol)s::varchar AS symbol, %(interval)s::varchar AS interval,
           timestamptz 'epoch' + open_us * interval '1 microsecond' AS open_time,
           open, high, low, close, volume, quote_volume, trade_count,
           coalesce(round(quote_volume / nullif(volume, 0), 12), close) AS vwap,
           timestamptz 'epoch' + close_us * interval '1 microsecond' AS close_time
    FROM {_RAW_NORMALISED.replace("SELECT CASE", "SELECT ctid AS row_id, CASE")}
    WHERE trade_count > 0
    ORDER BY open_us, row_id DESC
) s
ON c.exchange = s.exchange AND c.symbol = s.symbol AND c.interval = s.interval AND c.open_time = s.open_time
WHEN MATCHED AND (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trade_count, c.source, c.close_time)
                 IS DISTINCT FROM
                 (s.open, s.high, s.low, s.close, s.volume, s.quote_volume, s.trade_count, 'imported', s.close_time)
THEN UPDATE SET
    open = s.open, high = s.high, low = s.low, close = s.close, volume = s.volume, quote_volume = s.quote_volume,
    trade_count = s.trade_count, vwap = s.vwap, source = 'imported', close_time = s.close_time, updated_at = now()
WHEN NOT MATCHED THEN INSERT
    (exchange, symbol, interval, open_time, open, high, low, close, volume, quote_volume, trade_count, vwap,
     source, close_time, updated_at)
VALUES (s.exchange, s.symbol, s.interval, s.open_time, s.open, s.high, s.low, s.close, s.volume, s.quote_volume,
        s.trade_count, s.vwap, 'imported', s.close_time, now())
"""
# The earliest bar the MERGE wrote: MERGE has no RETURNING before PostgreSQL 17, but every row it wrote carries
# updated_at = now(), the transaction's start, which no other transaction's row can carry.
_FIRST_WRITTEN = """
SELECT (extract(epoch FROM min(open_time)) * 1000000)::bigint FROM analytics_candle
WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND interval = %(interval)s
  AND open_time >= timestamptz 'epoch' + %(first)s * interval '1 microsecond'
  AND open_time <= timestamptz 'epoch' + %(last)s * interval '1 microsecond'
  AND updated_at = now()
"""
_MERGE_UNIQUE = _MERGE.replace("SELECT DISTINCT ON (open_us)", "SELECT").replace("ORDER BY open_us, row_id DESC", "")


# Trades and aggTrades: a file's CSV text COPYed as is into a staging table (PostgreSQL parses it; aggTrades keep
# their aggregate id as the trade id), then stored by the live path's own idempotent insert
# (:func:`analytics.storage.insert_trades_sql`). A file with a row PostgreSQL refuses takes the row-by-row path.
TRADE_RAW = "history_trade_raw"
_CREATE_TRADE_RAW = f"""
CREATE TEMP TABLE IF NOT EXISTS {TRADE_RAW} (
    trade_id bigint NOT NULL,
    price numeric(30, 12) NOT NULL,
    quantity numeric(30, 12) NOT NULL,
    quote_quantity text,
    first_id text,
    last_id text,
    time_raw bigint NOT NULL,
    is_buyer_maker boolean NOT NULL,
    is_best_match text,
    CHECK (price <> 'NaN' AND quantity <> 'NaN' AND time_raw >= 0 AND time_raw < {TIME_LIMIT})
) ON COMMIT DELETE ROWS
"""
_TRADE_COLUMNS = {
    "trades": "trade_id, price, quantity, quote_quantity, time_raw, is_buyer_maker, is_best_match",
    "aggTrades": "trade_id, price, quantity, first_id, last_id, time_raw, is_buyer_maker, is_best_match",
}
# ms or µs to ms (µs floored), as history.parse.to_milliseconds.
_TRADE_MS = f"CASE WHEN time_raw >= {_MICROSECONDS_FROM} THEN time_raw / 1000 ELSE time_raw END"
_INSERT_TRADES = insert_trades_sql(
    f"""(
    SELECT %(exchange)s::varchar AS exchange, %(symbol)s::varchar AS symbol, trade_id, price, quantity,
           is_buyer_maker, {_TRADE_MS} AS trade_ms, {_TRADE_MS} AS received_ms,
           NULL::varchar AS trade_ref
    FROM {TRADE_RAW}
) s"""
)
_TRADE_STATS = f"SELECT count(*), min(trade_id), max(trade_id), min({_TRADE_MS}), max({_TRADE_MS}) FROM {TRADE_RAW}"
_TRADE_HOLES = _neighbours_sql("trade_id", TRADE_RAW, "trade_id - prev >= 2")


@dataclass
class Gaps:
    """Holes in a series, reported and never filled: missing bars (klines) or missing trade ids (trades)."""

    count: int = 0
    missing: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, what: str, missing: int) -> None:
        """Record one gap of ``missing`` bars or ids; only the first ten are kept as examples."""
        self.count += 1
        self.missing += missing
        if len(self.examples) < 10:
            self.examples.append(what)


@dataclass
class FileResult:
    """What importing one file did."""

    name: str
    rows: int = 0
    written: int = 0
    rejected: int = 0
    first_us: int | None = None
    last_us: int | None = None


class SeriesGapFinder:
    """Follows one series across files (imported in time order) and records its gaps."""

    def __init__(self, gaps: Gaps) -> None:
        self.gaps = gaps
        self.last: int | None = None

    def klines(self, first_us: int, last_us: int, holes: list[tuple[int, int]], step_us: int) -> None:
        """A batch's bars: its first and last open time and the holes inside it (from SQL). A bar opening off the
        grid (the archive's 2018-02-11 03:28:14.789) is a quirk, not a gap: only a distance of two steps or more
        is one."""
        if self.last is not None and first_us - self.last >= 2 * step_us:
            missing = (first_us - self.last) // step_us - 1
            self.gaps.add(f"{_us_label(self.last)} -> {_us_label(first_us)} ({missing} bars)", missing)
        for prev, nxt in holes:
            missing = (nxt - prev) // step_us - 1
            self.gaps.add(f"{_us_label(prev)} -> {_us_label(nxt)} ({missing} bars)", missing)
        if self.last is None or last_us > self.last:
            self.last = last_us

    def trades(self, first_id: int, last_id: int, holes: list[tuple[int, int]]) -> None:
        """A file's trades: its first and last id and the holes inside it (from SQL)."""
        self.trade(first_id)
        for prev, nxt in holes:
            missing = nxt - prev - 1
            self.gaps.add(f"ids {prev + 1}..{nxt - 1} ({missing} trades)", missing)
        if self.last is None or last_id > self.last:
            self.last = last_id

    def trade(self, trade_id: int) -> None:
        """The next trade id seen: a jump past ``last + 1`` records a gap; an id not above ``last`` changes nothing."""
        if self.last is not None and trade_id > self.last + 1:
            missing = trade_id - self.last - 1
            self.gaps.add(f"ids {self.last + 1}..{trade_id - 1} ({missing} trades)", missing)
        if self.last is None or trade_id > self.last:
            self.last = trade_id


def _us_label(us: int) -> str:
    return f"{us_to_datetime(us):%Y-%m-%d %H:%M:%S}"


def _valid_rows(
    rows: Iterable[list[str]], parse: Callable[[list[str]], Any], name: str, result: FileResult
) -> Iterator[Any]:
    """Parsed rows; a row that does not parse is skipped, counted and logged (never stops the file)."""
    for line, row in enumerate(rows, start=1):
        try:
            parsed = parse(row)
        except (ValueError, IndexError) as exc:
            result.rejected += 1
            if result.rejected <= 5:
                logger.warning("history: row rejected", extra={"file": name, "line": line, "reason": str(exc)})
            continue
        result.rows += 1
        yield parsed


@dataclass
class KlineBatch:
    """What storing a batch of klines files of one series did: each file's rows (or why it was not read) and the
    batch's writes."""

    files: list[FileResult] = field(default_factory=list)
    errors: dict[str, Exception] = field(default_factory=dict)  # file name -> why nothing of it was stored
    written: int = 0
    first_us: int | None = None
    last_us: int | None = None
    first_written_us: int | None = None  # the earliest bar the batch changed (indicators are recomputed from it)
    empty: int = 0  # klines without a trade, not stored


def import_klines(
    paths: Sequence[Path],
    symbol: str,
    interval: str,
    tracker: SeriesGapFinder,
    *,
    exchange: str = EXCHANGE,
    server_side: bool = True,
) -> KlineBatch:
    """Store klines files of one series as imported candles of ``interval``, together in one transaction (the
    caller rolls the larger intervals up with :func:`rollup_range`).

    Each file is COPYed as is into a staging table under a savepoint of its own; a file with a row PostgreSQL
    refuses is parsed in Python instead, its bad rows skipped and counted; a file that cannot be read at all is an
    error of that file (``errors``), never of the batch. One gap query and one MERGE then store the whole batch: a
    statement per batch instead of five per file. Should the batch itself fail, its files are stored one by one,
    so a file that breaks the MERGE costs only itself. ``server_side=False`` parses every file in Python (the
    path a file with bad rows takes; tests compare the two).
    """
    if interval not in INTERVAL_SECONDS:
        raise ParseError(f"interval {interval} is not stored (intervals: {', '.join(INTERVAL_SECONDS)})")
    try:
        return _import_kline_batch(paths, symbol, interval, tracker, exchange, server_side)
    except DatabaseError as exc:
        if len(paths) == 1:
            return KlineBatch(errors={paths[0].name: exc})
        logger.info("history: batch refused, storing its files one by one", extra={"reason": _first_line(exc)})
    merged = KlineBatch()
    for path in paths:
        one = import_klines([path], symbol, interval, tracker, exchange=exchange, server_side=server_side)
        merged.files += one.files
        merged.errors.update(one.errors)
        merged.written += one.written
        merged.empty += one.empty
        if one.first_written_us is not None:
            merged.first_written_us = min(one.first_written_us, merged.first_written_us or one.first_written_us)
        if one.first_us is not None and one.last_us is not None:
            merged.first_us = one.first_us if merged.first_us is None else min(merged.first_us, one.first_us)
            merged.last_us = one.last_us if merged.last_us is None else max(merged.last_us, one.last_us)
    return merged


def _import_kline_batch(
    paths: Sequence[Path], symbol: str, interval: str, tracker: SeriesGapFinder, exchange: str, server_side: bool
) -> KlineBatch:
    step_us = INTERVAL_SECONDS[interval] * 1_000_000
    batch = KlineBatch()
    with transaction.atomic(), connection.wrap_database_errors, connection.cursor() as cursor:
        # The batch's sort (DISTINCT ON) in memory: a year of 1h bars spills the default 4 MB to disk.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(_CREATE_RAW)
        staged = _stage_batch(cursor, paths) if server_side and len(paths) > 1 else None
        if staged is not None:
            batch.files = staged
        else:
            for path in paths:
                try:
                    batch.files.append(_stage_klines(cursor, path, server_side))
                except (ParseError, OSError, DatabaseError) as exc:
                    batch.errors[path.name] = exc
        if not batch.files:
            return batch
        cursor.execute(_RAW_STATS)
        rows, first, last, empty = cursor.fetchone()
        if not rows:
            return batch
        batch.empty = int(empty)
        cursor.execute(_RAW_GAPS, {"two_steps": 2 * step_us})
        found = [(int(a), int(b)) for a, b in cursor.fetchall()]
        holes = [(a, b) for a, b in found if a != b]
        merge = _MERGE if len(holes) < len(found) else _MERGE_UNIQUE
        symbol_lock(exchange, symbol, "candles")  # only now: staging needs no lock, and the live path waits less
        key = {"exchange": exchange, "symbol": symbol, "interval": interval}
        cursor.execute(merge, key)
        batch.written = cursor.rowcount
        batch.first_us, batch.last_us = int(first), int(last)
        if batch.written:
            cursor.execute(_FIRST_WRITTEN, {**key, "first": int(first), "last": int(last)})
            batch.first_written_us = int(cursor.fetchone()[0])
    tracker.klines(int(first), int(last), holes, step_us)
    return batch


class _RestageError(Exception):
    """The batch's single COPY did not take every line as a row: stage it again file by file."""


def _stage_batch(cursor: Any, paths: Sequence[Path]) -> list[FileResult] | None:
    """Every file COPYed as is in one COPY statement (one round trip instead of one per file), under a savepoint;
    None when anything in it fails, and the caller stages file by file. Rows per file are its lines: when the COPY
    succeeds every line was a row (a blank or short line fails it), which the COPY's own row count confirms."""
    results: list[FileResult] = []
    try:
        with transaction.atomic(), connection.wrap_database_errors:
            with cursor.cursor.copy(_COPY_RAW) as copy:
                for path in paths:
                    lines, last = 0, b"\n"
                    for chunk in csv_chunks(path):
                        copy.write(chunk)
                        lines += chunk.count(b"\n")
                        last = chunk[-1:]
                    if last != b"\n":  # a file without a final newline: end its last row before the next file
                        copy.write(b"\n")
                        lines += 1
                    results.append(FileResult(path.name, rows=lines))
            if cursor.cursor.rowcount != sum(r.rows for r in results):
                raise _RestageError
    except (DataError, IntegrityError, ParseError, OSError, _RestageError) as exc:
        logger.debug("history: batch staged file by file", extra={"reason": _first_line(exc)})
        return None
    return results


def _stage_klines(cursor: Any, path: Path, server_side: bool = True) -> FileResult:
    """COPY one file into the staging table under a savepoint; row by row when PostgreSQL refuses a row."""
    result = FileResult(path.name)
    if server_side:
        try:
            with transaction.atomic(), connection.wrap_database_errors:
                with cursor.cursor.copy(_COPY_RAW) as copy:
                    for chunk in csv_chunks(path):
                        copy.write(chunk)
                result.rows = max(cursor.cursor.rowcount, 0)
                return result
        except (DataError, IntegrityError) as exc:
            # A row PostgreSQL cannot take (malformed, NaN, short): nothing of the file was staged (the savepoint).
            logger.info(
                "history: file has bad rows, importing row by row", extra={"file": path.name, "reason": str(exc)}
            )
    with transaction.atomic(), connection.wrap_database_errors, cursor.cursor.copy(_COPY_PARSED) as copy:
        write = copy.write_row
        for kline in _valid_rows(csv_rows(path), PARSERS["klines"], path.name, result):
            write(kline)
    return result


def _first_line(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0]


def rollup_targets(interval: str) -> list[str]:
    """The stored intervals that ``interval`` rolls up into (larger, whole multiples of it)."""
    step = INTERVAL_SECONDS[interval]
    return [i for i in candle_logic.ALL_INTERVALS if INTERVAL_SECONDS[i] > step and INTERVAL_SECONDS[i] % step == 0]


def rollup_range(exchange: str, symbol: str, base: str, first: datetime, last: datetime) -> dict[str, datetime]:
    """Roll the ``base`` candles of every bucket touching ``first..last`` up into the larger intervals, in one
    transaction under the symbol's candle lock; return the earliest open time written per interval.

    Run once per import over everything it read (one set-based statement per interval instead of one per file:
    a third of the import's time otherwise), whether or not the files changed anything: a run interrupted before
    its rollup is repaired by the next one, and unchanged buckets are skipped by the rollup's guard.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")  # years of bars sorted by bucket in memory, not on disk
        symbol_lock(exchange, symbol, "candles")
        return rollup(cursor, exchange, symbol, base, first, last)


def rollup(cursor: Any, exchange: str, symbol: str, base: str, first: datetime, last: datetime) -> dict[str, datetime]:
    """Roll the ``base`` candles of every bucket touching ``first..last`` up into the larger intervals; return the
    earliest open time written per interval (intervals where nothing changed are absent)."""
    # Only the earliest time written is needed: fetching every written row's time cost a third of the rollup.
    sql = f"WITH written AS ({candle_logic.rollup_sql(CandleSource.ROLLUP)}) SELECT min(open_time) FROM written"
    written: dict[str, datetime] = {}
    done = [base]
    for interval in rollup_targets(base):
        step = timedelta(seconds=INTERVAL_SECONDS[interval])
        # From the largest interval already rolled up that nests in this one (1d from 4h, not from 1h): exact,
        # as every bucket nests in exactly one larger bucket, and it reads a fraction of the rows.
        source = max(
            (i for i in done if INTERVAL_SECONDS[interval] % INTERVAL_SECONDS[i] == 0), key=INTERVAL_SECONDS.__getitem__
        )
        done.append(interval)
        params = {
            "exchange": exchange,
            "symbol": symbol,
            "interval": interval,
            "step": step,
            "origin": EPOCH,
            "lo": bucket_start(first, interval),
            "hi": bucket_start(last, interval) + step,
            "base": source,
            "source": CandleSource.ROLLUP.value,
        }
        cursor.execute(sql, params)
        (earliest,) = cursor.fetchone()
        if earliest is not None:
            written[interval] = earliest
    return written


def import_trades(
    path: Path,
    symbol: str,
    kind: str,
    tracker: SeriesGapFinder,
    *,
    exchange: str = EXCHANGE,
    batch_size: int = 50_000,
    server_side: bool = True,
) -> FileResult:
    """Store one trades/aggTrades file with the live path's idempotent insert, then recompute its candles.

    The file's CSV is COPYed as is (PostgreSQL parses it) and inserted in one transaction; a file with a row
    PostgreSQL refuses goes row by row instead, through :func:`analytics.storage.store_trades` in batches of
    ``batch_size``, its bad rows skipped and counted (``server_side=False`` takes that path for every file).
    An aggTrades row is stored as one trade keyed by its aggregate id (same price, side and time for all the
    trades it aggregates, so candle prices and volumes are exact; ``trade_count`` counts aggregates). Do not
    import trades and aggTrades of one symbol over the same days: their ids are different sequences.
    ``received_at`` is the trade time (deterministic, so a re-run is a no-op).
    """
    result: FileResult | None = None
    if server_side:
        try:
            result = _import_trades_csv(path, symbol, kind, tracker, exchange)
        except (DataError, IntegrityError) as exc:
            logger.info(
                "history: file has bad rows, importing row by row", extra={"file": path.name, "reason": str(exc)}
            )
    if result is None:
        result = _import_trades_rows(path, symbol, kind, tracker, exchange, batch_size)
    if result.first_us is not None and result.last_us is not None:
        candle_logic.recompute_candles(exchange, symbol, result.first_us // 1000, result.last_us // 1000)
    return result


def _import_trades_csv(path: Path, symbol: str, kind: str, tracker: SeriesGapFinder, exchange: str) -> FileResult:
    """The fast path: the CSV text COPYed as is, gaps found in SQL, one insert."""
    result = FileResult(path.name)
    copy_sql = f"COPY {TRADE_RAW} ({_TRADE_COLUMNS[kind]}) FROM STDIN WITH (FORMAT csv)"
    with transaction.atomic(), connection.wrap_database_errors, connection.cursor() as cursor:
        cursor.execute(_CREATE_TRADE_RAW)
        with cursor.cursor.copy(copy_sql) as copy:
            for chunk in csv_chunks(path):
                copy.write(chunk)
        cursor.execute(_TRADE_STATS)
        rows, first_id, last_id, first_ms, last_ms = cursor.fetchone()
        if not rows:
            return result
        cursor.execute(_TRADE_HOLES)
        holes = [(int(a), int(b)) for a, b in cursor.fetchall()]
        cursor.execute(_INSERT_TRADES, {"exchange": exchange, "symbol": symbol})
        result.written = int(cursor.fetchone()[0])
    result.rows = int(rows)
    result.first_us, result.last_us = int(first_ms) * 1000, int(last_ms) * 1000
    tracker.trades(int(first_id), int(last_id), holes)
    return result


def _import_trades_rows(
    path: Path, symbol: str, kind: str, tracker: SeriesGapFinder, exchange: str, batch_size: int
) -> FileResult:
    """The row-by-row path: rows parsed in Python (bad ones skipped and counted), stored by ``store_trades``."""
    result = FileResult(path.name)
    batches = _trade_batches(path, symbol, kind, tracker, exchange, batch_size, result)
    # One batch of look-ahead: the next batch is parsed in a thread while this one is stored (the database's
    # share of store_trades releases the GIL). The generator only ever runs in that one thread, one step at a time.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-parse") as pool:
        pending = pool.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            lo, hi = min(r.trade_time for r in batch), max(r.trade_time for r in batch)
            if result.first_us is None or lo * 1000 < result.first_us:
                result.first_us = lo * 1000
            if result.last_us is None or hi * 1000 > result.last_us:
                result.last_us = hi * 1000
            result.written += store_trades(batch).inserted
    return result


def _trade_batches(
    path: Path, symbol: str, kind: str, tracker: SeriesGapFinder, exchange: str, batch_size: int, result: FileResult
) -> Iterator[list[TradeRecord]]:
    """The file's trades as TradeRecords, ``batch_size`` at a time (rows counted, bad rows rejected in ``result``)."""
    batch: list[TradeRecord] = []
    append = batch.append
    trade: ArchiveTrade
    for trade in _valid_rows(csv_rows(path), PARSERS[kind], path.name, result):
        tracker.trade(trade.trade_id)
        ms = trade.time_ms
        append(
            TradeRecord(exchange, symbol, trade.trade_id, trade.price, trade.quantity, trade.is_buyer_maker, ms, ms, ms)
        )
        if len(batch) >= batch_size:
            yield batch
            batch = []
            append = batch.append
    if batch:
        yield batch


def refresh_indicators(exchange: str, symbol: str, intervals: Iterable[str], start: datetime) -> int:
    """Recompute the stored indicators of ``intervals`` from ``start`` to the newest candle, in the bounded
    chunks :func:`analytics.indicators.update_indicators` computes; return the rows written."""
    return sum(indicator_logic.recompute_indicators(exchange, symbol, interval, start) for interval in intervals)
