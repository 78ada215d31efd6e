"""Binance spot: ``@trade`` streams over combined-stream WebSockets, backfill over ``historicalTrades`` by id, and
order books from ``@depth@100ms`` plus ``/api/v3/depth`` (:mod:`books.stream`)."""

from __future__ import annotations

from ingest.exchanges.binance.adapter import BinanceExchange
from ingest.exchanges.binance.backfill import BinanceBackfiller
from ingest.exchanges.descriptor import BackfillBy, Capabilities, ExchangeDescriptor

DESCRIPTOR = ExchangeDescriptor(
    name="binance",
    ws_url_setting="BINANCE_WS_URL",
    ws_url_default="wss://stream.binance.com:9443",
    rest_url_setting="BINANCE_REST_URL",
    rest_url_default="https://api.binance.com",
    adapter=BinanceExchange,
    backfiller=BinanceBackfiller,
    symbols=BinanceExchange.spelling,
    capabilities=Capabilities(trades=True, consecutive_ids=True, backfill=BackfillBy.ID, rest_reach=None, books=True),
    demo_symbols=("btcusdt", "trxusdt"),
)
