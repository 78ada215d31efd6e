"""Channels group names: the one place that builds them (ASCII letters, digits, ``-`` and ``.`` only)."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9\-.]")

WHALES_GROUP = "whales"
HEALTH_GROUP = "health"
OVERVIEW_GROUP = "overview"


def market_group(exchange: str, symbol: str) -> str:
    """The group for one symbol's live updates, e.g. ``market.binance.btcusdt``."""
    return f"market.{_clean(exchange)}.{_clean(symbol)}"


def _clean(part: str) -> str:
    # Coinbase (BTC-USD) and Kraken (BTC/USD) symbols carry separators: keep the group name unambiguous.
    return _UNSAFE.sub("-", part.strip().lower())
