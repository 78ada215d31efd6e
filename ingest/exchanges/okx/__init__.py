"""OKX spot: the v5 public ``trades`` channel over WebSocket, backfill over ``history-trades`` by trade id."""

from __future__ import annotations

from ingest.exchanges.descriptor import BackfillBy, Capabilities, ExchangeDescriptor
from ingest.exchanges.okx.adapter import OkxExchange
from ingest.exchanges.okx.backfill import OkxBackfiller

DESCRIPTOR = ExchangeDescriptor(
    name="okx",
    ws_url_setting="OKX_WS_URL",
    ws_url_default="wss://ws.okx.com:8443",  # the adapter adds /ws/v5/public
    rest_url_setting="OKX_REST_URL",
    rest_url_default="https://www.okx.com",
    adapter=OkxExchange,
    backfiller=OkxBackfiller,
    symbols=OkxExchange.spelling,
    # tradeId is consecutive per instrument (the bundled recording steps by 1); history-trades pages by id
    # (type=1) and OKX documents it as reaching back three months: no trade-count bound, so None.
    capabilities=Capabilities(trades=True, consecutive_ids=True, backfill=BackfillBy.ID, rest_reach=None),
    demo_symbols=("BTC-USDT",),
)
