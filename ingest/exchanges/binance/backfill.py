"""Binance gap backfill over REST ``GET /api/v3/historicalTrades``, paged forward by ``fromId``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.message import Message
from typing import Any

from ingest.backfill import PAGE, BackfillError, BackfillResult, RestClient, collect
from ingest.exchanges.binance.adapter import trade_from_rest

REQUEST_WEIGHT = 25  # historicalTrades costs 25 of the 6,000 per minute
WEIGHT_LIMIT = 6000
WEIGHT_MARGIN = 500  # pause before the limit, not at it


def _binance_row_id(row: Any) -> int | None:
    value = row.get("id") if isinstance(row, dict) else None
    return value if type(value) is int else None


class BinanceBackfiller(RestClient):
    """Fetches ``first..last`` of a symbol from ``<rest_url>/api/v3/historicalTrades``, paged by ``fromId``.

    The used weight reported in ``X-MBX-USED-WEIGHT-1M`` is kept under the limit by pausing until the next minute.
    """

    def __init__(self, rest_url: str, **options: Any) -> None:
        super().__init__(rest_url, **options)
        self.used_weight = 0

    def _pace(self) -> None:
        if self.used_weight + REQUEST_WEIGHT > WEIGHT_LIMIT - WEIGHT_MARGIN:
            # The weight window is the calendar minute: wait for the next one.
            self.sleep(60 - time.time() % 60 + 0.5)
            self.used_weight = 0
        super()._pace()

    def _note(self, headers: Message) -> None:
        header = headers.get("X-MBX-USED-WEIGHT-1M")
        if header and header.isdigit():
            self.used_weight = int(header)
        else:
            self.used_weight += REQUEST_WEIGHT

    def _get(self, symbol: str, from_id: int, limit: int) -> list[Any]:
        what = f"historicalTrades {symbol} fromId={from_id}"
        rows, _headers = self.get_json(
            "/api/v3/historicalTrades", {"symbol": symbol, "fromId": from_id, "limit": limit}, what
        )
        if not isinstance(rows, list):
            raise BackfillError(f"historicalTrades answered {str(rows)[:200]}")
        return rows

    def pages(
        self, symbol: str, first: int, last: int, after_time: int | None = None
    ) -> Iterator[tuple[BackfillResult, int]]:
        """Trades ``first..last`` of ``symbol`` one request (at most 1,000 trades) at a time, in id order.

        Yields each page with the next id still wanted; stops early when the exchange has nothing more. A page
        that cannot be fetched raises :class:`BackfillError`. Only one page is in memory at a time.
        """
        next_id = first
        while next_id <= last:
            rows = self._get(symbol.upper(), next_id, min(PAGE, last - next_id + 1))
            if not rows:
                return  # the exchange has nothing (yet) at this id
            page = BackfillResult(complete=False)
            before = next_id
            next_id = collect(page, rows, symbol, trade_from_rest, _binance_row_id, next_id, last)
            page.complete = next_id > last
            yield page, next_id
            if next_id == before:
                return  # no progress: asking again would get the same answer
