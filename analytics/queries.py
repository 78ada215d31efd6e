"""Index-friendly reads shared by the API, the admin, the health page and the periodic stats refresh.

The trade and candle tables hold tens of millions of rows: nothing here scans them. Distinct (exchange, symbol)
pairs come from a loose index scan (a recursive query that jumps from one pair to the next along the index that
starts with ``(exchange, symbol)``: one index probe per pair), and per-pair first/last trade times from one index
probe each. This module is the one place that asks "which markets exist". Its raw SQL reads where the ORM would
(:func:`cryptoproject.db_router.read_connection`): the read replica while serving pages and the API.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from django.db import connections

from analytics.models import Candle, SymbolStats, Trade
from cryptoproject.db_router import read_connection

_TRADE = Trade._meta.db_table


def _pairs_cte(table: str) -> str:
    """A CTE ``pairs`` of ``table``'s distinct (exchange, symbol), by loose index scan."""
    return f"""
WITH RECURSIVE pairs AS (
    (SELECT exchange, symbol FROM {table} ORDER BY exchange, symbol LIMIT 1)
    UNION ALL
    SELECT nxt.exchange, nxt.symbol
    FROM pairs
    CROSS JOIN LATERAL (
        SELECT t.exchange, t.symbol FROM {table} t
        WHERE (t.exchange, t.symbol) > (pairs.exchange, pairs.symbol)
        ORDER BY t.exchange, t.symbol LIMIT 1
    ) nxt
)
"""


_PAIRS_CTE = _pairs_cte(_TRADE)
_PAIRS_SQL = _PAIRS_CTE + "SELECT exchange, symbol FROM pairs"
_CANDLE_PAIRS_SQL = _pairs_cte(Candle._meta.db_table) + "SELECT exchange, symbol FROM pairs"

_BOUNDS_SQL = (
    _PAIRS_CTE
    + f"""
SELECT pairs.exchange, pairs.symbol, first.traded_at, last.traded_at
FROM pairs
CROSS JOIN LATERAL (
    SELECT traded_at FROM {_TRADE} t WHERE t.exchange = pairs.exchange AND t.symbol = pairs.symbol
    ORDER BY traded_at LIMIT 1
) first
CROSS JOIN LATERAL (
    SELECT traded_at FROM {_TRADE} t WHERE t.exchange = pairs.exchange AND t.symbol = pairs.symbol
    ORDER BY traded_at DESC LIMIT 1
) last
"""
)


def trade_pairs() -> list[tuple[str, str]]:
    """Distinct (exchange, symbol) pairs present in the trade table, by loose index scan."""
    with read_connection(Trade).cursor() as cursor:
        cursor.execute(_PAIRS_SQL)
        return [(str(e), str(s)) for e, s in cursor.fetchall()]


def candle_pairs() -> list[tuple[str, str]]:
    """Distinct (exchange, symbol) pairs present in the candle table (imported history has candles, no trades)."""
    with read_connection(Candle).cursor() as cursor:
        cursor.execute(_CANDLE_PAIRS_SQL)
        return [(str(e), str(s)) for e, s in cursor.fetchall()]


def known_pairs() -> list[tuple[str, str]]:
    """Every (exchange, symbol) with stored trades, candles or 24h statistics, sorted."""
    pairs = set(trade_pairs())
    pairs.update(candle_pairs())
    pairs.update(SymbolStats.objects.values_list("exchange", "symbol"))
    return sorted(pairs)


def trade_time_bounds() -> dict[tuple[str, str], tuple[datetime, datetime]]:
    """First and last ``traded_at`` per (exchange, symbol) pair, one index probe each way."""
    with read_connection(Trade).cursor() as cursor:
        cursor.execute(_BOUNDS_SQL)
        return {(str(e), str(s)): (first, last) for e, s, first, last in cursor.fetchall()}


_RECENT_PRICES = """
SELECT trade_id, price::text, (extract(epoch FROM traded_at) * 1000)::bigint
FROM analytics_trade
WHERE exchange = %s AND symbol = %s
  AND traded_at >= timestamptz 'epoch' + %s * interval '1 millisecond'
  AND traded_at <= timestamptz 'epoch' + %s * interval '1 millisecond'
  AND trade_id < %s
ORDER BY trade_id
"""


def recent_prices(
    exchange: str, symbol: str, start_ms: int, end_ms: int, before_id: int, using: str = "default"
) -> list[tuple[int, str, int]]:
    """(trade id, price text, time ms) of the market's stored trades traded in [start_ms, end_ms] with a trade id
    below ``before_id``, in trade-id order; on ``using``'s connection, so inside its open transaction (the alert
    evaluator rebuilds a price window from them)."""
    with connections[using].cursor() as cur:
        cur.execute(_RECENT_PRICES, [exchange, symbol, start_ms, end_ms, before_id])
        return [(int(i), str(p), int(t)) for i, p, t in cur.fetchall()]


class SeriesBar(NamedTuple):
    """One stored candle of a series with its indicators (None/empty where not computed)."""

    open_ms: int
    close: Decimal
    volume: Decimal
    rsi: Decimal | None
    macd: Decimal | None
    macd_signal: Decimal | None
    sma: dict[str, str]
    ema: dict[str, str]
    bb_upper: Decimal | None
    bb_lower: Decimal | None


_SERIES = """
SELECT (extract(epoch FROM c.open_time) * 1000)::bigint, c.close, c.volume, p.rsi, p.macd, p.macd_signal,
       coalesce(p.sma, '{}'::jsonb), coalesce(p.ema, '{}'::jsonb), p.bb_upper, p.bb_lower
FROM analytics_candle c
LEFT JOIN analytics_indicatorpoint p
  ON p.exchange = c.exchange AND p.symbol = c.symbol AND p.interval = c.interval AND p.open_time = c.open_time
WHERE c.exchange = %s AND c.symbol = %s AND c.interval = %s
  AND c.open_time >= timestamptz 'epoch' + %s * interval '1 millisecond'
ORDER BY c.open_time
"""


def series_since(exchange: str, symbol: str, interval: str, start_ms: int, using: str = "default") -> list[SeriesBar]:
    """The market's stored candles of ``interval`` opened at or after ``start_ms`` (to the newest), with their
    indicators, oldest first: one query, on ``using``'s connection (inside its open transaction)."""
    with connections[using].cursor() as cur:
        cur.execute(_SERIES, [exchange, symbol, interval, start_ms])
        rows = cur.fetchall()
    # Django's connection hands jsonb over as text (its JSONField decodes it): decoded here.
    return [
        SeriesBar(int(ms), close, volume, rsi, macd, signal, _json(sma), _json(ema), upper, lower)
        for ms, close, volume, rsi, macd, signal, sma, ema, upper, lower in rows
    ]


def _json(value: Any) -> dict[str, str]:
    return json.loads(value) if isinstance(value, str | bytes) else dict(value)
