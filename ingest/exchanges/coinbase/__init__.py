"""Coinbase: Advanced Trade ``market_trades`` over WebSocket, backfill over the Exchange REST's trades by id; order
books from the Advanced Trade ``level2`` channel (:mod:`books.socket_stream`)."""

from __future__ import annotations

from ingest.exchanges.coinbase.adapter import CoinbaseExchange
from ingest.exchanges.coinbase.backfill import CoinbaseBackfiller
from ingest.exchanges.descriptor import BackfillBy, Capabilities, ExchangeDescriptor

DESCRIPTOR = ExchangeDescriptor(
    name="coinbase",
    ws_url_setting="COINBASE_WS_URL",
    ws_url_default="wss://advanced-trade-ws.coinbase.com",
    # The Exchange REST pages trades by id; the Advanced Trade REST cannot.
    rest_url_setting="COINBASE_REST_URL",
    rest_url_default="https://api.exchange.coinbase.com",
    adapter=CoinbaseExchange,
    backfiller=CoinbaseBackfiller,
    symbols=CoinbaseExchange.spelling,
    capabilities=Capabilities(
        trades=True, consecutive_ids=True, sequenced=True, backfill=BackfillBy.ID, rest_reach=None, books=True
    ),
    demo_symbols=("BTC-USD", "ETH-USD"),
)
