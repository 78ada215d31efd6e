"""Whale alerts: one ``WhaleAlert`` per stored trade whose quote notional is at or above the symbol's threshold.

Detection is one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING`` over a time range of stored trades,
so a replayed window or a re-run task creates nothing new, and only the alerts it did create are pushed to the
whales page. Users' whale rules are one alert kind among the others (``alerts``, docs/ALERTS.md).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection

from analytics.models import SymbolThreshold
from analytics.timeutil import ms_to_datetime

logger = logging.getLogger(__name__)

_INSERT = """
INSERT INTO analytics_whalealert
    (exchange, symbol, trade_id, price, quantity, notional, side, threshold, traded_at, created_at)
SELECT t.exchange, t.symbol, t.trade_id, t.price, t.quantity, t.quote_quantity,
       CASE WHEN t.is_buyer_maker THEN 'sell' ELSE 'buy' END, %(threshold)s, t.traded_at, now()
FROM analytics_trade t
WHERE t.exchange = %(exchange)s AND t.symbol = %(symbol)s
  AND t.traded_at >= %(start)s AND t.traded_at <= %(end)s
  AND t.quote_quantity >= %(threshold)s
ORDER BY t.traded_at, t.trade_id
ON CONFLICT (exchange, symbol, trade_id) DO NOTHING
RETURNING id
"""


def threshold_for(exchange: str, symbol: str) -> Decimal:
    """The symbol's override from the admin, else ``WHALE_THRESHOLD_USD``."""
    override = (
        SymbolThreshold.objects.filter(exchange=exchange, symbol=symbol).values_list("threshold_usd", flat=True).first()
    )
    return Decimal(override) if override is not None else Decimal(settings.WHALE_THRESHOLD_USD)


def threshold_overrides(using: str = "default") -> dict[tuple[str, str], Decimal]:
    """Every symbol's override, by (exchange, symbol): one query (the alert evaluator reads them once per batch)."""
    rows = SymbolThreshold.objects.using(using).values_list("exchange", "symbol", "threshold_usd")
    return {(exchange, symbol): Decimal(threshold) for exchange, symbol, threshold in rows}


def detect_whales(exchange: str, symbol: str, start_ms: int, end_ms: int) -> list[int]:
    """Create the missing alerts for trades traded in [start_ms, end_ms]; return the new alert ids, oldest first."""
    if end_ms < start_ms:
        raise ValueError(f"end_ms {end_ms} is before start_ms {start_ms}")
    params: dict[str, Any] = {
        "exchange": exchange,
        "symbol": symbol,
        "start": ms_to_datetime(start_ms),
        "end": ms_to_datetime(end_ms),
        "threshold": threshold_for(exchange, symbol),
    }
    with connection.cursor() as cur:
        cur.execute(_INSERT, params)
        ids = sorted(row[0] for row in cur.fetchall())
    if ids:
        logger.info(
            "whale alerts created",
            extra={"exchange": exchange, "symbol": symbol, "count": len(ids), "threshold": str(params["threshold"])},
        )
    return ids
