"""Kraken: the v2 WebSocket ``trade`` channel, backfill over ``/0/public/Trades`` by time."""

from __future__ import annotations

from ingest.exchanges.descriptor import BackfillBy, Capabilities, ExchangeDescriptor
from ingest.exchanges.kraken.adapter import KrakenExchange
from ingest.exchanges.kraken.backfill import KrakenBackfiller

DESCRIPTOR = ExchangeDescriptor(
    name="kraken",
    ws_url_setting="KRAKEN_WS_URL",
    ws_url_default="wss://ws.kraken.com/v2",
    rest_url_setting="KRAKEN_REST_URL",
    rest_url_default="https://api.kraken.com",
    adapter=KrakenExchange,
    backfiller=KrakenBackfiller,
    symbols=KrakenExchange.spelling,
    capabilities=Capabilities(trades=True, consecutive_ids=True, backfill=BackfillBy.TIME, rest_reach=None, books=True),
    demo_symbols=("BTC/USD", "ETH/USD"),
)
