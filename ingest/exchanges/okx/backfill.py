"""OKX gap backfill over REST ``GET /api/v5/market/history-trades?instId=&type=1&after=<tradeId>&limit=100``.

``type=1`` pages by trade id: ``after`` answers the (at most 100) trades with ids below it, newest first, in
``{"code":"0","msg":"","data":[...]}`` (rows with the WebSocket's fields). The public limit is 20 requests per 2 s
per IP; beyond it OKX answers HTTP 429 with code ``50011`` ("Too Many Requests"), sometimes as a 200 whose body
carries the code: both are backed off and retried. OKX documents the endpoint as reaching back three months.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ingest.backfill import PAGE, BackfillError, BackfillResult, RestClient, collect
from ingest.exchanges.okx.adapter import rest_row_id, trade_from_rest

#: OKX's page limit for history-trades
OKX_PAGE = 100
#: the codes that mean "slow down", not "wrong request"
RATE_LIMIT_CODES = ("50011", "50061")


class OkxBackfiller(RestClient):
    """Fetches ``first..last`` of an instrument by walking ``history-trades`` backwards from ``after=last+1``.

    Pages run newest first, so the walk collects the gap's pages, then hands them on oldest first (in id order):
    memory holds the whole gap, which ``INGEST_BACKFILL_MAX_TRADES`` bounds. When OKX has nothing older before
    ``first`` is reached, the ids below its oldest trade are reported ``unrecoverable``.
    """

    min_interval = 0.1  # 20 requests per 2 s

    def _limited(self, body: Any) -> str | None:
        code = body.get("code") if isinstance(body, dict) else None
        if code in RATE_LIMIT_CODES:
            return f"code {code}: {str(body.get('msg'))[:100]}"
        return None

    def _page(self, inst_id: str, after: int) -> list[Any]:
        what = f"OKX history-trades {inst_id} after={after}"
        body, _headers = self.get_json(
            "/api/v5/market/history-trades", {"instId": inst_id, "type": 1, "after": after, "limit": OKX_PAGE}, what
        )
        if not isinstance(body, dict) or body.get("code") != "0" or not isinstance(body.get("data"), list):
            raise BackfillError(f"{what} answered {str(body)[:200]}")
        return list(body["data"])

    def pages(
        self, symbol: str, first: int, last: int, after_time: int | None = None
    ) -> Iterator[tuple[BackfillResult, int]]:
        """Trades ``first..last`` of instrument ``symbol`` in id order (see the class)."""
        if first > last:
            return
        inst_id = symbol.upper()
        walked: list[list[Any]] = []
        after = last + 1
        while True:
            rows = self._page(inst_id, after)
            if not rows:
                break  # nothing older: OKX's history ends here
            walked.append(rows)
            ids = [i for i in map(rest_row_id, rows) if i is not None]
            if not ids or min(ids) <= first or min(ids) >= after:
                break
            after = min(ids)
        if not walked:
            # Trade ``last + 1`` exists (it revealed the gap), yet nothing older is served: all beyond its history.
            yield BackfillResult(complete=False, unrecoverable=[(first, last)]), last + 1
            return
        # Oldest first, without the rows below the range (the last page's overlap); PAGE trades a time.
        ascending = [row for rows in reversed(walked) for row in reversed(rows) if (rest_row_id(row) or first) >= first]
        next_id = first
        for start in range(0, len(ascending), PAGE):
            page = BackfillResult(complete=False)
            next_id = collect(
                page, ascending[start : start + PAGE], inst_id, trade_from_rest, rest_row_id, next_id, last
            )
            page.complete = next_id > last
            yield page, next_id
