"""OHLCV candles recomputed from stored trades, one SQL statement per interval, upserted idempotently.

A bucket is always recomputed whole (never incrementally), so batches that arrive out of order or are replayed
leave exactly the candle the stored trades define, and running the same recomputation twice changes nothing.

The 1m buckets are aggregated from ``analytics_trade`` (served by its natural key's index, ``(exchange, symbol,
traded_at, trade_id)``: an index range scan, checked with EXPLAIN in the tests). Every larger interval is rolled up
from the 1m candles of the same transaction, which is exact because all intervals are whole multiples of one
minute aligned on the Unix epoch (every 1m bucket nests in exactly one bucket of each interval): a 1d candle then
reads at most 1,440 rows instead of a whole day of trades. Buckets are aligned with ``date_bin`` on 1970-01-01 UTC,
so days start at UTC midnight.

A per-symbol transaction-scoped advisory lock serialises recomputations of one symbol: two workers that
recompute the same bucket from different snapshots could otherwise commit the older snapshot last.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection, transaction

from analytics.locks import symbol_lock
from analytics.models import INTERVAL_SECONDS, CandleSource, Interval
from analytics.timeutil import EPOCH, bucket_start, ms_to_datetime

logger = logging.getLogger(__name__)

BASE_INTERVAL = Interval.M1.value
ALL_INTERVALS: tuple[str, ...] = tuple(i.value for i in Interval)

_UPSERT_SET = """
ON CONFLICT (exchange, symbol, interval, open_time) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, quote_volume = EXCLUDED.quote_volume, trade_count = EXCLUDED.trade_count,
    vwap = EXCLUDED.vwap, source = EXCLUDED.source, updated_at = now()
"""

# Which source wins a bucket (analytics.models.CandleSource): live candles never overwrite imported klines or
# their rollups (the archive is the exchange's complete, final record of the bar, live ones may hold only the
# trades ingest saw); rollups never overwrite imported klines.
_UPSERT_GUARD = {
    CandleSource.LIVE: "WHERE analytics_candle.source = 'live'",
    # Also skips a rollup equal to the stored row, so re-running an import leaves even updated_at alone.
    CandleSource.ROLLUP: """WHERE analytics_candle.source <> 'imported'
  AND (analytics_candle.open, analytics_candle.high, analytics_candle.low, analytics_candle.close,
       analytics_candle.volume, analytics_candle.quote_volume, analytics_candle.trade_count, analytics_candle.source)
      IS DISTINCT FROM
      (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume, EXCLUDED.quote_volume,
       EXCLUDED.trade_count, EXCLUDED.source)""",
}

_UPSERT_TAIL = _UPSERT_SET + _UPSERT_GUARD[CandleSource.LIVE] + "\nRETURNING open_time\n"

# open/close: the price of the first/last trade by (traded_at, trade_id); a 1m bucket holds few enough trades for
# array_agg. vwap is rounded to the column's 12 decimal places.
_FROM_TRADES = (
    """
INSERT INTO analytics_candle
    (exchange, symbol, interval, open_time, open, high, low, close, volume, quote_volume, trade_count, vwap,
     updated_at)
SELECT %(exchange)s, %(symbol)s, %(interval)s, b.bucket,
       (array_agg(b.price ORDER BY b.traded_at, b.trade_id))[1],
       max(b.price), min(b.price),
       (array_agg(b.price ORDER BY b.traded_at DESC, b.trade_id DESC))[1],
       sum(b.quantity), sum(b.quote_quantity), count(*),
       round(sum(b.quote_quantity) / nullif(sum(b.quantity), 0), 12),
       now()
FROM (
    SELECT date_bin(%(step)s, t.traded_at, %(origin)s) AS bucket,
           t.price, t.quantity, t.quote_quantity, t.traded_at, t.trade_id
    FROM analytics_trade t
    WHERE t.exchange = %(exchange)s AND t.symbol = %(symbol)s
      AND t.traded_at >= %(lo)s AND t.traded_at < %(hi)s
) b
GROUP BY b.bucket
ORDER BY b.bucket
"""
    + _UPSERT_TAIL
)

# Rolls candles of the %(base)s interval up into %(interval)s: the live path from 1m, the history import from the
# imported interval. A bucket without volume (an archived outage bar) takes its close as vwap.
_ROLLUP = """
INSERT INTO analytics_candle
    (exchange, symbol, interval, open_time, open, high, low, close, volume, quote_volume, trade_count, vwap,
     source, updated_at)
SELECT %(exchange)s, %(symbol)s, %(interval)s, b.bucket,
       (array_agg(b.open ORDER BY b.open_time))[1],
       max(b.high), min(b.low),
       (array_agg(b.close ORDER BY b.open_time DESC))[1],
       sum(b.volume), sum(b.quote_volume), sum(b.trade_count),
       coalesce(round(sum(b.quote_volume) / nullif(sum(b.volume), 0), 12),
                (array_agg(b.close ORDER BY b.open_time DESC))[1]),
       %(source)s, now()
FROM (
    SELECT date_bin(%(step)s, c.open_time, %(origin)s) AS bucket, c.open_time,
           c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trade_count
    FROM analytics_candle c
    WHERE c.exchange = %(exchange)s AND c.symbol = %(symbol)s AND c.interval = %(base)s
      AND c.open_time >= %(lo)s AND c.open_time < %(hi)s
) b
GROUP BY b.bucket
ORDER BY b.bucket
"""

_FROM_MINUTES = _ROLLUP + _UPSERT_TAIL


def rollup_sql(source: str) -> str:
    """The rollup statement writing candles of ``source`` (with that source's overwrite guard)."""
    return _ROLLUP + _UPSERT_SET + _UPSERT_GUARD[CandleSource(source)] + "\nRETURNING open_time\n"


class CandleKey(NamedTuple):
    """One candle of a symbol's series: the interval label and the bucket's open time."""

    interval: str
    open_time: datetime


def recompute_candles(
    exchange: str,
    symbol: str,
    start_ms: int,
    end_ms: int,
    intervals: Iterable[str] = ALL_INTERVALS,
) -> list[CandleKey]:
    """Recompute every candle of ``intervals`` whose bucket touches [start_ms, end_ms]; return their keys.

    Buckets with no stored trade are not written (and an existing row for such a bucket is left alone: trades
    are only ever added, except by retention, which keeps candles on purpose).
    """
    if end_ms < start_ms:
        raise ValueError(f"end_ms {end_ms} is before start_ms {start_ms}")
    wanted = set(intervals)
    unknown = wanted - set(ALL_INTERVALS)
    if unknown:
        raise ValueError(f"unknown intervals: {sorted(unknown)}")
    start, end = ms_to_datetime(start_ms), ms_to_datetime(end_ms)
    touched: list[CandleKey] = []
    with transaction.atomic(savepoint=False):
        symbol_lock(exchange, symbol, "candles")
        with connection.cursor() as cur:
            # The 1m series is the source of every larger interval, so it is refreshed whenever any is asked.
            for interval in ALL_INTERVALS:
                if interval != BASE_INTERVAL and interval not in wanted:
                    continue
                lo = bucket_start(start, interval)
                hi = bucket_start(end, interval) + timedelta(seconds=INTERVAL_SECONDS[interval])
                params: dict[str, Any] = {
                    "exchange": exchange,
                    "symbol": symbol,
                    "interval": interval,
                    "step": timedelta(seconds=INTERVAL_SECONDS[interval]),
                    "origin": EPOCH,
                    "lo": lo,
                    "hi": hi,
                    "base": BASE_INTERVAL,
                    "source": CandleSource.LIVE.value,
                }
                cur.execute(_FROM_TRADES if interval == BASE_INTERVAL else _FROM_MINUTES, params)
                rows = cur.fetchall()
                if interval == BASE_INTERVAL and not rows:
                    break  # no stored trade in the window (e.g. removed by retention): nothing to roll up
                if interval in wanted:
                    touched.extend(CandleKey(interval, row[0]) for row in rows)
    logger.debug(
        "candles recomputed",
        extra={"exchange": exchange, "symbol": symbol, "start_ms": start_ms, "end_ms": end_ms, "rows": len(touched)},
    )
    return touched
