"""Bybit spot: the v5 public ``publicTrade`` topic over WebSocket, and a catch-up over ``recent-trade``."""

from __future__ import annotations

from ingest.exchanges.bybit.adapter import BybitExchange
from ingest.exchanges.bybit.backfill import SPOT_LIMIT, BybitBackfiller
from ingest.exchanges.descriptor import BackfillBy, Capabilities, ExchangeDescriptor

DESCRIPTOR = ExchangeDescriptor(
    name="bybit",
    ws_url_setting="BYBIT_WS_URL",
    ws_url_default="wss://stream.bybit.com",  # the adapter adds /v5/public/spot
    rest_url_setting="BYBIT_REST_URL",
    rest_url_default="https://api.bybit.com",
    adapter=BybitExchange,
    backfiller=BybitBackfiller,
    symbols=BybitExchange.spelling,
    # String ids, not consecutive per symbol, and no per-connection sequence: no gap is visible in the stream.
    # recent-trade serves the newest 60 spot trades only, and each reconnect catches up from them.
    capabilities=Capabilities(trades=True, consecutive_ids=False, backfill=BackfillBy.RECENT, rest_reach=SPOT_LIMIT),
    demo_symbols=("BTCUSDT",),
)
