"""Bybit catch-up over REST ``GET /v5/market/recent-trade?category=spot&symbol=&limit=60``.

The endpoint answers only the newest trades (at most 60 on spot), newest first, in
``{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"execId","symbol","price","size","side","time",
"isBlockTrade"}]},"time":..}``; it cannot be paged back. So Bybit's backfill is a catch-up, not a range fetch: after
a reconnect (or on a quiet symbol) it brings the newest trades, the id check drops those already published, and
when even the oldest row served is newer than the last trade seen, the window between them is reported as possibly
lost (``BackfillResult.lost_window``, counted in ``backfill_unrecoverable``). Beyond the public limit (600 requests
per 5 s per IP) Bybit answers HTTP 403 or a body with ``retCode`` 10006: both are backed off and retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from ingest.backfill import BackfillError, BackfillResult, RestClient, now_ms
from ingest.exchanges.base import BadInput
from ingest.exchanges.bybit.adapter import trade_from_rest
from ingest.records import InvalidRecordError, TradeRecord, trade_key

REST_PATH = "/v5/market/recent-trade"
#: recent-trade's largest answer on spot (the documentation: ``limit`` [1, 60] for spot)
SPOT_LIMIT = 60
#: the codes that mean "slow down", not "wrong request"
RATE_LIMIT_CODES = (10006, 10018)


class BybitBackfiller(RestClient):
    """The newest trades of a symbol, oldest first, with the window they fail to reach (see the module)."""

    min_interval = 0.01  # 600 requests per 5 s

    def _limited(self, body: Any) -> str | None:
        code = body.get("retCode") if isinstance(body, dict) else None
        if code in RATE_LIMIT_CODES:
            return f"retCode {code}: {str(body.get('retMsg'))[:100]}"
        return None

    def recent(self, symbol: str) -> list[Any]:
        """The rows of ``recent-trade`` for ``symbol``, newest first."""
        what = f"Bybit recent-trade {symbol}"
        body, _headers = self.get_json(REST_PATH, {"category": "spot", "symbol": symbol, "limit": SPOT_LIMIT}, what)
        result = body.get("result") if isinstance(body, dict) else None
        rows = result.get("list") if isinstance(result, dict) else None
        if body.get("retCode") != 0 or not isinstance(rows, list):
            raise BackfillError(f"{what} answered {str(body)[:200]}")
        return rows

    def pages(
        self, symbol: str, first: int, last: int, after_time: int | None = None
    ) -> Iterator[tuple[BackfillResult, int]]:
        """One page: the newest trades of ``symbol`` at or after ``after_time`` (all of them without it), oldest
        first. Ids say nothing here: ``first - 1`` is taken as the last trade seen, and ``last`` is ignored."""
        symbol = symbol.upper()
        rows = self.recent(symbol)
        page = BackfillResult()
        received_at = now_ms()
        trades: list[TradeRecord] = []
        reached = after_time is None or len(rows) < SPOT_LIMIT
        for row in reversed(rows):
            try:
                trade = trade_from_rest(symbol, row, received_at)
            except InvalidRecordError as exc:
                page.bad.append(BadInput(exc.reason, orjson.dumps(row, default=str).decode()))
                continue
            if trade.trade_id == first - 1 or (after_time is not None and trade.trade_time < after_time):
                reached = True  # the last trade seen, or one older: the answer covers everything since
            if after_time is None or trade.trade_time >= after_time:
                trades.append(trade)
        if not reached and trades:
            page.lost_window = (after_time, trades[0].trade_time)
        page.trades = trades
        yield page, last + 1


def row_id(row: Any) -> int | None:
    """The trade key of a ``recent-trade`` row, None when it has none."""
    value = row.get("execId") if isinstance(row, dict) else None
    return trade_key(value) if isinstance(value, str) and value else None
