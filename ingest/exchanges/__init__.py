"""Exchange adapters: per-exchange frame parsers and connection plans, normalised to ``TradeRecord``."""

from __future__ import annotations

from ingest.exchanges.base import Exchange
from ingest.exchanges.binance import BinanceExchange
from ingest.exchanges.coinbase import CoinbaseExchange
from ingest.exchanges.kraken import KrakenExchange

ADAPTERS: dict[str, type[Exchange]] = {
    "binance": BinanceExchange,
    "coinbase": CoinbaseExchange,
    "kraken": KrakenExchange,
}

__all__ = ["ADAPTERS", "BinanceExchange", "CoinbaseExchange", "Exchange", "KrakenExchange"]
