"""Per-symbol serialisation across processes: PostgreSQL advisory locks held until the transaction ends.

Candle, indicator and stats writers of one symbol take the same ``(scope, exchange, symbol)`` lock, so two workers
recomputing overlapping ranges never interleave their upserts.
"""

from __future__ import annotations

from django.db import connection


def symbol_lock(exchange: str, symbol: str, scope: str) -> None:
    """Take a transaction-scoped advisory lock for one (scope, exchange, symbol); call inside ``atomic``."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"{scope}:{exchange}:{symbol}"])
