"""Channels group names: the one place that builds them (ASCII letters, digits, ``-`` and ``.`` only).

Also the validation of the ``<exchange>/<symbol>`` pair that pages and sockets take from their URLs, so a page
and its socket agree on what a valid market is.
"""

from __future__ import annotations

import re

from ingest.records import EXCHANGES

_UNSAFE = re.compile(r"[^A-Za-z0-9\-.]")
# An exchange's own symbol: letters and digits, optionally joined by one separator (BTCUSDT, BTC-USD, BTC/USD).
_SYMBOL = re.compile(r"[A-Za-z0-9]+(?:[-/._][A-Za-z0-9]+)*")
SYMBOL_MAX_LENGTH = 32

WHALES_GROUP = "whales"
OVERVIEW_GROUP = "overview"


class InvalidMarketError(ValueError):
    """An exchange or symbol taken from a URL that the dashboard does not serve; the message says which."""


def market_group(exchange: str, symbol: str) -> str:
    """The group for one symbol's live updates, e.g. ``market.binance.btcusdt``."""
    return f"market.{_clean(exchange)}.{_clean(symbol)}"


def parse_market(exchange: str, symbol: str) -> tuple[str, str]:
    """Validate a URL's exchange and symbol; returns them normalised (``binance``, ``BTCUSDT``).

    Raises :class:`InvalidMarketError` for an unknown exchange or a symbol outside the symbol charset.
    """
    exchange_norm = exchange.strip().lower()
    if exchange_norm not in EXCHANGES:
        raise InvalidMarketError(f"unknown exchange {exchange!r} (expected one of {', '.join(sorted(EXCHANGES))})")
    symbol_norm = symbol.strip().upper()
    if len(symbol_norm) > SYMBOL_MAX_LENGTH or not _SYMBOL.fullmatch(symbol_norm):
        raise InvalidMarketError(f"invalid symbol {symbol!r} (letters and digits, joined by one of - / . _)")
    return exchange_norm, symbol_norm


def _clean(part: str) -> str:
    # Coinbase (BTC-USD) and Kraken (BTC/USD) symbols carry separators: keep the group name unambiguous.
    return _UNSAFE.sub("-", part.strip().lower())
