"""Rolling 24-hour statistics per symbol (``SymbolStats``), exact and cheap.

The window is the 24 hours up to the symbol's LATEST STORED TRADE, not up to the wall clock: a replay of old
recorded data (the demo, the benchmarks, a backfill) then shows meaningful numbers instead of an empty window,
and a live symbol's latest trade is at most seconds old, so the two agree in production.

Window [T - 24 h, T], T the latest trade time. The bulk comes from the 1m candles (at most 1,440 rows); the
partial first minute and the last ``TAIL_MINUTES`` minutes (whose candles may not be recomputed yet when this runs
in parallel with ``update_candles``) are read from the trades themselves, so the row matches the trades exactly.
One SQL statement combines the three parts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction

from analytics.decimals import fit_column
from analytics.locks import symbol_lock
from analytics.models import SymbolStats, Trade
from analytics.timeutil import bucket_start

logger = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
TAIL_MINUTES = 5
_CHANGE_QUANT = Decimal("0.0001")
# SymbolStats.change_pct is numeric(12, 4): at most 99,999,999.9999 %.
CHANGE_PCT_DIGITS, CHANGE_PCT_PLACES = 12, 4

# Candles cover [m0, tail); trades cover [start, m0) and [tail, last]. The three ranges are disjoint and ordered,
# so "first"/"last" by (time, trade id) across the union is the first/last trade of the window.
_AGGREGATE = """
WITH parts AS (
    SELECT t.traded_at AS t_first, t.traded_at AS t_last, t.trade_id AS id_first, t.trade_id AS id_last,
           t.price AS open, t.price AS close, t.price AS high, t.price AS low,
           t.quantity AS volume, t.quote_quantity AS quote_volume, 1 AS trade_count
    FROM analytics_trade t
    WHERE t.exchange = %(exchange)s AND t.symbol = %(symbol)s
      AND ((t.traded_at >= %(start)s AND t.traded_at < %(m0)s) OR (t.traded_at >= %(tail)s AND t.traded_at <= %(last)s))
    UNION ALL
    SELECT c.open_time, c.open_time, 0, 0, c.open, c.close, c.high, c.low, c.volume, c.quote_volume, c.trade_count
    FROM analytics_candle c
    WHERE c.exchange = %(exchange)s AND c.symbol = %(symbol)s AND c.interval = '1m'
      AND c.open_time >= %(m0)s AND c.open_time < %(tail)s
)
SELECT (array_agg(open ORDER BY t_first, id_first))[1], (array_agg(close ORDER BY t_last DESC, id_last DESC))[1],
       max(high), min(low), sum(volume), sum(quote_volume), sum(trade_count)
FROM parts
"""


@dataclass(frozen=True)
class Window24h:
    """The stats of one symbol's 24-hour window."""

    last_price: Decimal
    open_price: Decimal
    change_pct: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int
    last_trade_at: datetime


def change_pct(open_price: Decimal, last_price: Decimal) -> Decimal:
    """Percentage change from open to last, rounded to 4 decimals (0 when the open is 0), clamped to what the
    ``change_pct`` column holds (a huge price ratio would otherwise overflow it and fail the row)."""
    if open_price == 0:
        return Decimal(0).quantize(_CHANGE_QUANT)
    return fit_column((last_price - open_price) / open_price * 100, CHANGE_PCT_DIGITS, CHANGE_PCT_PLACES)


def compute_window(exchange: str, symbol: str) -> Window24h | None:
    """The 24-hour stats ending at the symbol's latest stored trade; ``None`` when it has no trade."""
    latest = (
        Trade.objects.filter(exchange=exchange, symbol=symbol)
        .order_by("-traded_at", "-trade_id")
        .values_list("traded_at", flat=True)
        .first()
    )
    if latest is None:
        return None
    start = latest - WINDOW
    # First whole minute inside the window (the minute containing `start` is partial unless aligned).
    m0 = bucket_start(start, "1m")
    if m0 < start:
        m0 += timedelta(minutes=1)
    tail = max(m0, bucket_start(latest, "1m") - timedelta(minutes=TAIL_MINUTES - 1))
    with connection.cursor() as cur:
        cur.execute(
            _AGGREGATE,
            {"exchange": exchange, "symbol": symbol, "start": start, "m0": m0, "tail": tail, "last": latest},
        )
        row = cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY always returns one row
    open_price, last_price, high, low, volume, quote_volume, count = row
    return Window24h(
        last_price=last_price,
        open_price=open_price,
        change_pct=change_pct(open_price, last_price),
        high=high,
        low=low,
        volume=volume,
        quote_volume=quote_volume,
        trade_count=int(count),
        last_trade_at=latest,
    )


def refresh_stats(exchange: str, symbol: str) -> SymbolStats | None:
    """Recompute and upsert the symbol's ``SymbolStats`` row; ``None`` (nothing written) without trades."""
    with transaction.atomic():
        # Serialised per symbol: a refresh computed from an older snapshot never commits over a newer one.
        symbol_lock(exchange, symbol, "stats")
        return _refresh(exchange, symbol)


def _refresh(exchange: str, symbol: str) -> SymbolStats | None:
    window = compute_window(exchange, symbol)
    if window is None:
        return None
    stats, _ = SymbolStats.objects.update_or_create(
        exchange=exchange,
        symbol=symbol,
        defaults={
            "last_price": window.last_price,
            "open_price": window.open_price,
            "change_pct": window.change_pct,
            "high": window.high,
            "low": window.low,
            "volume": window.volume,
            "quote_volume": window.quote_volume,
            "trade_count": window.trade_count,
            "last_trade_at": window.last_trade_at,
        },
    )
    return stats
