"""Coinbase gap backfill over the Coinbase Exchange REST ``GET /products/{product_id}/trades``, paged by trade id.

The Advanced Trade public REST cannot page by id: ``GET /api/v3/brokerage/market/products/{id}/ticker`` gives only
the latest trades (or a time window), so a range of ids is fetched from the Exchange API instead, which answers
``limit`` (at most 1,000) trades with ids below ``after``, newest first, with the ``CB-AFTER`` header as the
cursor of the next older page. Its public limit is about 10 requests a second per IP (HTTP 429 beyond it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ingest.backfill import PAGE, BackfillError, BackfillResult, RestClient, collect
from ingest.exchanges.coinbase.adapter import trade_from_rest


def _row_id(row: Any) -> int | None:
    value = row.get("trade_id") if isinstance(row, dict) else None
    return value if type(value) is int else None


class CoinbaseBackfiller(RestClient):
    """Fetches ``first..last`` of a product by walking ``/products/{id}/trades`` backwards from ``after=last+1``.

    Pages run newest first, so the walk collects the gap's pages, then yields them oldest first (in id order,
    :data:`ingest.backfill.PAGE` trades a time): memory holds the whole gap, which ``INGEST_BACKFILL_MAX_TRADES``
    bounds. When the exchange has nothing older before ``first`` is reached, the ids below its oldest trade (all of
    them when it has nothing below ``last + 1``) are reported ``unrecoverable``.
    """

    min_interval = 0.1  # the public limit: about 10 requests a second

    def _page(self, product: str, after: int) -> tuple[list[Any], int | None]:
        what = f"Coinbase trades {product} after={after}"
        rows, headers = self.get_json(f"/products/{product}/trades", {"limit": PAGE, "after": after}, what)
        if not isinstance(rows, list):
            raise BackfillError(f"{what} answered {str(rows)[:200]}")
        cursor = headers.get("CB-AFTER")
        return rows, int(cursor) if cursor and cursor.isdigit() else None

    def pages(
        self, symbol: str, first: int, last: int, after_time: int | None = None
    ) -> Iterator[tuple[BackfillResult, int]]:
        """Trades ``first..last`` of product ``symbol`` in id order, :data:`PAGE` at a time (see the class)."""
        if first > last:
            return
        product = symbol.upper()
        walked: list[list[Any]] = []
        after = last + 1
        while True:
            rows, cursor = self._page(product, after)
            if not rows:
                break  # nothing older: the exchange's history ends here
            walked.append(rows)
            ids = [i for i in map(_row_id, rows) if i is not None]
            if not ids or min(ids) <= first:
                break
            # CB-AFTER is the next older page's cursor; without it (or without progress) the oldest id seen is.
            cursor = cursor if cursor is not None and cursor < after else min(ids)
            if cursor >= after:
                break
            after = cursor
        if not walked:
            # Trade ``last + 1`` exists (it revealed the gap), yet nothing older is served: all beyond its history.
            yield BackfillResult(complete=False, unrecoverable=[(first, last)]), last + 1
            return
        # Oldest first, without the rows below the range (the last page's overlap).
        ascending = [row for rows in reversed(walked) for row in reversed(rows) if (_row_id(row) or first) >= first]
        next_id = first
        for start in range(0, len(ascending), PAGE):
            page = BackfillResult(complete=False)
            next_id = collect(page, ascending[start : start + PAGE], product, trade_from_rest, _row_id, next_id, last)
            page.complete = next_id > last
            yield page, next_id
