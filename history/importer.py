"""Storage of archived klines and trades, idempotently, with the live path's own code where there is one.

Klines: each file is COPYed into a staging table and upserted as candles of its interval with
``source = 'imported'`` in one transaction; at the end of the import the larger intervals are rolled up from them
by the live path's rollup statement (:func:`analytics.candles.rollup_sql`) with ``source = 'rollup'``. Trades and
aggTrades go through :func:`analytics.storage.store_trades` (the live COPY path) in batches, then their candles are
recomputed by :func:`analytics.candles.recompute_candles`, exactly as live trades get theirs.

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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import DataError, IntegrityError, connection, transaction

from analytics import candles as candle_logic
from analytics import indicators as indicator_logic
from analytics.locks import symbol_lock
from analytics.models import INTERVAL_SECONDS, CandleSource
from analytics.storage import store_trades
from analytics.timeutil import EPOCH, bucket_start
from history.parse import MICROSECONDS_FROM as _MICROSECONDS_FROM
from history.parse import PARSERS, ArchiveTrade, Kline, ParseError, csv_chunks, csv_rows
from ingest.records import TradeRecord

logger = logging.getLogger(__name__)

EXCHANGE = "binance"
_EPOCH = EPOCH
KLINE_STAGING = "history_kline_staging"

_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {KLINE_STAGING} (
    open_us bigint NOT NULL,
    open numeric(30, 12) NOT NULL,
    high numeric(30, 12) NOT NULL,
    low numeric(30, 12) NOT NULL,
    close numeric(30, 12) NOT NULL,
    volume numeric(38, 18) NOT NULL,
    close_us bigint NOT NULL,
    quote_volume numeric(38, 18) NOT NULL,
    trade_count bigint NOT NULL
) ON COMMIT DELETE ROWS
"""

_COPY = (
    f"COPY {KLINE_STAGING} (open_us, open, high, low, close, volume, close_us, quote_volume, trade_count) FROM STDIN"
)

# The fast path: the file's CSV text COPYed as is (server-side parsing), all twelve columns. NaN is a valid numeric
# but no price: refused like a malformed row (the file then goes through the row-by-row path, which skips it).
KLINE_RAW = "history_kline_raw"
_NOT_NAN = " AND ".join(f"{c} <> 'NaN'" for c in ("open", "high", "low", "close", "volume", "quote_volume"))
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
    CHECK ({_NOT_NAN})
) ON COMMIT DELETE ROWS
"""
_COPY_RAW = f"COPY {KLINE_RAW} FROM STDIN WITH (FORMAT csv)"
# ms or µs, as in history.parse.to_microseconds.
_RAW_NORMALISED = f"""(
    SELECT CASE WHEN open_raw >= {_MICROSECONDS_FROM} THEN open_raw ELSE open_raw * 1000 END AS open_us,
           open, high, low, close, volume,
           CASE WHEN close_raw >= {_MICROSECONDS_FROM} THEN close_raw ELSE close_raw * 1000 END AS close_us,
           quote_volume, trade_count
    FROM {KLINE_RAW}
) s"""
# Rows, first and last bar, and the holes of two steps or more (the gaps), of what was COPYed.
_RAW_STATS = f"SELECT count(*), min(open_us), max(open_us) FROM {_RAW_NORMALISED}"
_RAW_GAPS = f"""
SELECT prev, open_us FROM (
    SELECT open_us, lag(open_us) OVER (ORDER BY open_us) AS prev FROM {_RAW_NORMALISED}
) g
WHERE open_us - prev >= %(two_steps)s
ORDER BY open_us
"""

# DISTINCT ON: a file repeating a bar keeps its last row (ON CONFLICT cannot touch one row twice). vwap as the
# live candles define it; a bar without volume (an outage bar) takes its close.
_UPSERT_FROM = """
WITH written AS (
    INSERT INTO analytics_candle
        (exchange, symbol, interval, open_time, open, high, low, close, volume, quote_volume, trade_count, vwap,
         source, close_time, updated_at)
    SELECT DISTINCT ON (open_us)
           %(exchange)s, %(symbol)s, %(interval)s, timestamptz 'epoch' + open_us * interval '1 microsecond',
           open, high, low, close, volume, quote_volume, trade_count,
           coalesce(round(quote_volume / nullif(volume, 0), 12), close),
           'imported', timestamptz 'epoch' + close_us * interval '1 microsecond', now()
    FROM {relation}
    ORDER BY open_us, {order}
    ON CONFLICT (exchange, symbol, interval, open_time) DO UPDATE SET
        open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
        volume = EXCLUDED.volume, quote_volume = EXCLUDED.quote_volume, trade_count = EXCLUDED.trade_count,
        vwap = EXCLUDED.vwap, source = EXCLUDED.source, close_time = EXCLUDED.close_time, updated_at = now()
    WHERE (analytics_candle.open, analytics_candle.high, analytics_candle.low, analytics_candle.close,
           analytics_candle.volume, analytics_candle.quote_volume, analytics_candle.trade_count,
           analytics_candle.source, analytics_candle.close_time)
          IS DISTINCT FROM
          (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume, EXCLUDED.quote_volume,
           EXCLUDED.trade_count, EXCLUDED.source, EXCLUDED.close_time)
    RETURNING 1
)
SELECT count(*) FROM written
"""
# ctid: the order rows were COPYed in (in one statement's snapshot of a temp table), so the last repeat wins.
_UPSERT = _UPSERT_FROM.format(relation=KLINE_STAGING, order="ctid DESC")
_UPSERT_RAW = _UPSERT_FROM.format(
    relation=_RAW_NORMALISED.replace("SELECT CASE", "SELECT ctid AS row_id, CASE"), order="row_id DESC"
)


@dataclass
class Gaps:
    """Holes in a series, reported and never filled: missing bars (klines) or missing trade ids (trades)."""

    count: int = 0
    missing: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, what: str, missing: int) -> None:
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


class GapTracker:
    """Follows one series across files (imported in time order) and records its gaps."""

    def __init__(self, gaps: Gaps) -> None:
        self.gaps = gaps
        self.last: int | None = None

    def kline(self, open_us: int, step_us: int) -> None:
        # A bar opening off the grid (the archive's 2018-02-11 03:28:14.789) is a quirk, not a gap: only a
        # distance of two steps or more is one.
        if self.last is not None and open_us - self.last >= 2 * step_us:
            missing = (open_us - self.last) // step_us - 1
            self.gaps.add(f"{_us_label(self.last)} -> {_us_label(open_us)} ({missing} bars)", missing)
        if self.last is None or open_us > self.last:
            self.last = open_us

    def klines(self, first_us: int, last_us: int, holes: list[tuple[int, int]], step_us: int) -> None:
        """A whole file's bars: its first and last open time and the holes inside it (from SQL)."""
        self.kline(first_us, step_us)
        for prev, nxt in holes:
            missing = (nxt - prev) // step_us - 1
            self.gaps.add(f"{_us_label(prev)} -> {_us_label(nxt)} ({missing} bars)", missing)
        if self.last is None or last_us > self.last:
            self.last = last_us

    def trade(self, trade_id: int) -> None:
        if self.last is not None and trade_id > self.last + 1:
            missing = trade_id - self.last - 1
            self.gaps.add(f"ids {self.last + 1}..{trade_id - 1} ({missing} trades)", missing)
        if self.last is None or trade_id > self.last:
            self.last = trade_id


def _us_label(us: int) -> str:
    return f"{_EPOCH + timedelta(microseconds=us):%Y-%m-%d %H:%M:%S}"


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


def import_klines(
    path: Path, symbol: str, interval: str, tracker: GapTracker, *, exchange: str = EXCHANGE
) -> FileResult:
    """Store one klines file as imported candles of ``interval`` in one transaction (the caller rolls the larger
    intervals up with :func:`rollup_range`); :class:`ParseError` when the file cannot be read (nothing stored)."""
    if interval not in INTERVAL_SECONDS:
        raise ParseError(f"{path.name}: interval {interval} is not stored (intervals: {', '.join(INTERVAL_SECONDS)})")
    step_us = INTERVAL_SECONDS[interval] * 1_000_000
    try:
        return _import_klines_csv(path, symbol, interval, step_us, tracker, exchange)
    except (DataError, IntegrityError) as exc:
        # A row PostgreSQL cannot take (malformed, NaN, short): nothing of the fast path was stored (one
        # transaction); the row-by-row path stores the good rows and counts the bad ones.
        logger.info("history: file has bad rows, importing row by row", extra={"file": path.name, "reason": str(exc)})
    return _import_klines_rows(path, symbol, interval, step_us, tracker, exchange)


def _import_klines_csv(
    path: Path, symbol: str, interval: str, step_us: int, tracker: GapTracker, exchange: str
) -> FileResult:
    """The fast path: the CSV text COPYed as is into a staging table (PostgreSQL parses it), then upserted."""
    result = FileResult(path.name)
    with transaction.atomic(), connection.wrap_database_errors, connection.cursor() as cursor:
        symbol_lock(exchange, symbol, "candles")
        cursor.execute(_CREATE_RAW)
        with cursor.cursor.copy(_COPY_RAW) as copy:
            for chunk in csv_chunks(path):
                copy.write(chunk)
        cursor.execute(_RAW_STATS)
        rows, first, last = cursor.fetchone()
        if not rows:
            return result
        result.rows, result.first_us, result.last_us = int(rows), int(first), int(last)
        cursor.execute(_RAW_GAPS, {"two_steps": 2 * step_us})
        holes = [(int(a), int(b)) for a, b in cursor.fetchall()]
        cursor.execute(_UPSERT_RAW, {"exchange": exchange, "symbol": symbol, "interval": interval})
        result.written = cursor.fetchone()[0]
    tracker.klines(int(first), int(last), holes, step_us)
    return result


def _import_klines_rows(
    path: Path, symbol: str, interval: str, step_us: int, tracker: GapTracker, exchange: str
) -> FileResult:
    """The row-by-row path: each row parsed in Python, bad ones skipped and counted, good ones COPYed."""
    result = FileResult(path.name)
    with transaction.atomic(), connection.wrap_database_errors, connection.cursor() as cursor:
        symbol_lock(exchange, symbol, "candles")
        cursor.execute(_CREATE_STAGING)
        with cursor.cursor.copy(_COPY) as copy:
            write = copy.write_row
            kline: Kline
            for kline in _valid_rows(csv_rows(path), PARSERS["klines"], path.name, result):
                write(kline)
                tracker.kline(kline.open_time_us, step_us)
                if result.first_us is None or kline.open_time_us < result.first_us:
                    result.first_us = kline.open_time_us
                if result.last_us is None or kline.open_time_us > result.last_us:
                    result.last_us = kline.open_time_us
        cursor.execute(_UPSERT, {"exchange": exchange, "symbol": symbol, "interval": interval})
        result.written = cursor.fetchone()[0]
    return result


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
        symbol_lock(exchange, symbol, "candles")
        return rollup(cursor, exchange, symbol, base, first, last)


def rollup(cursor: Any, exchange: str, symbol: str, base: str, first: datetime, last: datetime) -> dict[str, datetime]:
    """Roll the ``base`` candles of every bucket touching ``first..last`` up into the larger intervals; return the
    earliest open time written per interval (intervals where nothing changed are absent)."""
    sql = candle_logic.rollup_sql(CandleSource.ROLLUP)
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
            "origin": _EPOCH,
            "lo": bucket_start(first, interval),
            "hi": bucket_start(last, interval) + step,
            "base": source,
            "source": CandleSource.ROLLUP.value,
        }
        cursor.execute(sql, params)
        times = [row[0] for row in cursor.fetchall()]
        if times:
            written[interval] = min(times)
    return written


def import_trades(
    path: Path,
    symbol: str,
    kind: str,
    tracker: GapTracker,
    *,
    exchange: str = EXCHANGE,
    batch_size: int = 50_000,
) -> FileResult:
    """Store one trades/aggTrades file through the live COPY path in batches, then recompute its candles.

    An aggTrades row is stored as one trade keyed by its aggregate id (same price, side and time for all the
    trades it aggregates, so candle prices and volumes are exact; ``trade_count`` counts aggregates). Do not
    import trades and aggTrades of one symbol over the same days: their ids are different sequences.
    ``received_at`` is the trade time (deterministic, so a re-run is a no-op).
    """
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
    if result.first_us is not None and result.last_us is not None:
        candle_logic.recompute_candles(exchange, symbol, result.first_us // 1000, result.last_us // 1000)
    return result


def _trade_batches(
    path: Path, symbol: str, kind: str, tracker: GapTracker, exchange: str, batch_size: int, result: FileResult
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
    total = 0
    for interval in intervals:
        cursor_time: datetime | None = start
        while cursor_time is not None:
            rows = indicator_logic.update_indicators(exchange, symbol, interval, cursor_time)
            total += len(rows)
            if len(rows) < indicator_logic.MAX_RECOMPUTED:
                cursor_time = None
            else:
                cursor_time = rows[-1].open_time + timedelta(microseconds=1)
    return total
