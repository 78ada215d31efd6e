"""Binance gap backfill over REST ``historicalTrades``: paged by ``fromId``, polite about weight and bans."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingest.exchanges.base import BadInput
from ingest.exchanges.binance import trade_from_rest
from ingest.records import InvalidRecordError, TradeRecord

logger = logging.getLogger(__name__)

PAGE = 1000  # the endpoint's maximum
REQUEST_WEIGHT = 25  # historicalTrades costs 25 of the 6,000 per minute
WEIGHT_LIMIT = 6000
WEIGHT_MARGIN = 500  # pause before the limit, not at it


class BackfillError(RuntimeError):
    """The missing range could not be fetched (network down, repeated server errors, a ban)."""


@dataclass
class BackfillResult:
    """What a backfill brought back: trades in id order, rows refused, and whether the range was covered."""

    trades: list[TradeRecord] = field(default_factory=list)
    bad: list[BadInput] = field(default_factory=list)
    complete: bool = True


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class BinanceBackfiller:
    """Fetches ``first..last`` of a symbol from ``<rest_url>/api/v3/historicalTrades``.

    HTTP 429 and 418 are answered by waiting ``Retry-After`` seconds; the used weight reported in
    ``X-MBX-USED-WEIGHT-1M`` is kept under the limit by pausing until the next minute.
    """

    def __init__(
        self,
        rest_url: str,
        timeout: float = 10.0,
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = 120.0,
    ) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.sleep = sleep
        self.max_wait = max_wait
        self.used_weight = 0
        self.requests = 0

    def _get(self, symbol: str, from_id: int, limit: int) -> list[Any]:
        query = urllib.parse.urlencode({"symbol": symbol, "fromId": from_id, "limit": limit})
        url = f"{self.rest_url}/api/v3/historicalTrades?{query}"
        delay = 0.5
        last_error: BaseException | None = None
        for _attempt in range(self.attempts):
            if self.used_weight + REQUEST_WEIGHT > WEIGHT_LIMIT - WEIGHT_MARGIN:
                # The weight window is the calendar minute: wait for the next one.
                self.sleep(60 - time.time() % 60 + 0.5)
                self.used_weight = 0
            try:
                self.requests += 1
                with urllib.request.urlopen(url, timeout=self.timeout) as response:
                    self._note_weight(response.headers.get("X-MBX-USED-WEIGHT-1M"))
                    rows = orjson.loads(response.read())
                if not isinstance(rows, list):
                    raise BackfillError(f"historicalTrades answered {str(rows)[:200]}")
                return rows
            except urllib.error.HTTPError as exc:
                last_error = exc
                if exc.code in (418, 429):
                    wait = _retry_after(exc.headers.get("Retry-After"), default=delay)
                    logger.warning(
                        "backfill rate limited",
                        extra={"status": exc.code, "retry_after": wait, "symbol": symbol, "from_id": from_id},
                    )
                    self.sleep(min(wait, self.max_wait))
                elif exc.code >= 500:
                    self.sleep(delay)
                else:
                    raise BackfillError(f"historicalTrades {symbol} fromId={from_id}: HTTP {exc.code}") from exc
            except (urllib.error.URLError, OSError, orjson.JSONDecodeError) as exc:
                last_error = exc
                self.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise BackfillError(f"historicalTrades {symbol} fromId={from_id} failed: {last_error}")

    def _note_weight(self, header: str | None) -> None:
        if header and header.isdigit():
            self.used_weight = int(header)
        else:
            self.used_weight += REQUEST_WEIGHT

    def fetch(self, symbol: str, first: int, last: int) -> BackfillResult:
        """Trades ``first..last`` (inclusive) of ``symbol`` in id order; ``complete`` False if some are missing."""
        result = BackfillResult()
        next_id = first
        while next_id <= last:
            try:
                rows = self._get(symbol.upper(), next_id, min(PAGE, last - next_id + 1))
            except BackfillError as exc:
                logger.error(
                    "backfill failed", extra={"symbol": symbol, "first": next_id, "last": last, "error": str(exc)}
                )
                result.complete = False
                return result
            if not rows:
                break  # the exchange has nothing (yet) at this id
            received_at = _now_ms()
            progressed = False
            for row in rows:
                try:
                    trade = trade_from_rest(symbol, row, received_at)
                except InvalidRecordError as exc:
                    result.bad.append(BadInput(exc.reason, orjson.dumps(row, default=str).decode()))
                    continue
                if trade.trade_id < next_id or trade.trade_id > last:
                    continue
                result.trades.append(trade)
                next_id = trade.trade_id + 1
                progressed = True
            if not progressed:
                break
        result.complete = next_id > last
        return result


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(float(value), 0.0) if value is not None else default
    except ValueError:
        return default
