"""Kraken gap backfill over REST ``GET /0/public/Trades?pair=<pair>&since=<timestamp>&count=<=1000``.

Kraken pages by time, not by id: ``since`` is a timestamp (exclusive; seconds, or nanoseconds as in the answer's
``last``), so a gap is fetched from the time of the last trade seen before it (:attr:`ingest.gaps.Gap.after_time`)
and the rows are filtered by trade id. Rate limits come back as errors in the JSON ``error`` list
(``EGeneral:Too many requests``, ``EAPI:Rate limit exceeded``), answered by backing off and trying again.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from ingest.backfill import PAGE, BackfillError, BackfillResult, RestClient, collect
from ingest.exchanges.kraken.adapter import JsonNumber, loads, rest_pair, rest_row_id, trade_from_rest

#: the errors that mean "slow down", not "wrong request"
RATE_LIMIT_ERRORS = ("EGeneral:Too many requests", "EAPI:Rate limit exceeded")


def _time_ns(value: Any) -> int | None:
    # A row's time (seconds, exact text) in nanoseconds.
    if isinstance(value, bool) or not isinstance(value, (JsonNumber, int)):
        return None
    try:
        return int(Decimal(str.__str__(value) if isinstance(value, JsonNumber) else value) * 1_000_000_000)
    except InvalidOperation:
        return None


class KrakenBackfiller(RestClient):
    """Fetches ``first..last`` of a pair from ``/0/public/Trades``, from the time of trade ``first - 1`` on.

    Each next page starts just before the time of the last row received rather than at ``last``: ``since`` is
    exclusive, and trades sharing that timestamp beyond the page's end would be skipped (the repeats are dropped
    by id). Without a known time before the gap nothing can be asked: :class:`BackfillError` (abandoned, logged).
    """

    # Kraken's public REST allows about one call a second per IP (a burst of 15, decaying one per 3 s).
    min_interval = 1.0

    def _limited(self, body: Any) -> str | None:
        errors = body.get("error") if isinstance(body, dict) else None
        if isinstance(errors, list) and any(str(e).startswith(RATE_LIMIT_ERRORS) for e in errors):
            return ", ".join(map(str, errors))
        return None

    def _decode(self, raw: bytes) -> Any:
        # Numbers as their exact text: a row's time as a float would lose its last digits.
        return loads(raw)

    def _page(self, pair: str, since: int) -> tuple[list[Any], int | None]:
        what = f"Kraken Trades {pair} since={since}"
        body, _headers = self.get_json("/0/public/Trades", {"pair": pair, "since": since, "count": PAGE}, what)
        if not isinstance(body, dict):
            raise BackfillError(f"{what} answered {str(body)[:200]}")
        errors = body.get("error")
        if errors:
            raise BackfillError(f"{what}: {', '.join(map(str, errors))[:200]}")
        result = body.get("result")
        if not isinstance(result, dict):
            raise BackfillError(f"{what} answered no result: {str(body)[:200]}")
        # The key is Kraken's own name of the pair (XXBTZUSD for XBTUSD): whatever it is, the one that is not "last".
        keys = [key for key in result if key != "last"]
        rows = result[keys[0]] if len(keys) == 1 else None
        if not isinstance(rows, list):
            raise BackfillError(f"{what} answered no single pair's trades: {str(result)[:200]}")
        last = result.get("last")
        cursor = int(last) if isinstance(last, str) and last.isdigit() else None
        return rows, cursor

    def pages(
        self, symbol: str, first: int, last: int, after_time: int | None = None
    ) -> Iterator[tuple[BackfillResult, int]]:
        """Trades ``first..last`` of ``symbol`` (``BTC/USD``) in id order, one request at a time (see the class)."""
        if first > last:
            return
        if after_time is None:
            raise BackfillError(f"Kraken pages by time and the time of {symbol} trade {first - 1} is unknown")
        pair = rest_pair(symbol)
        since = (after_time - 1) * 1_000_000  # a millisecond early: record times are truncated to ms
        next_id = first
        while next_id <= last:
            rows, cursor = self._page(pair, since)
            if not rows:
                return  # nothing after ``since`` (yet)
            page = BackfillResult(complete=False)
            next_id = collect(page, rows, symbol, trade_from_rest, rest_row_id, next_id, last)
            page.complete = next_id > last
            yield page, next_id
            end = _time_ns(rows[-1][2]) if isinstance(rows[-1], list) and len(rows[-1]) > 2 else None
            following = end - 1 if end is not None and end - 1 > since else cursor
            if following is None or following <= since:
                return  # no progress: asking again would get the same answer
            since = following
