"""Binance gap backfill over REST ``historicalTrades``: paged by ``fromId``, polite about weight and bans,
on a worker thread of its own (:class:`BackfillWorker`), one page in memory at a time."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingest.exchanges.base import BadInput
from ingest.exchanges.binance import trade_from_rest
from ingest.gaps import Gap
from ingest.metrics import IngestMetrics
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

    def pages(self, symbol: str, first: int, last: int) -> Iterator[tuple[BackfillResult, int]]:
        """Trades ``first..last`` of ``symbol`` one request (at most 1,000 trades) at a time, in id order.

        Yields each page with the next id still wanted; stops early when the exchange has nothing more. A page
        that cannot be fetched raises :class:`BackfillError`. Only one page is in memory at a time.
        """
        next_id = first
        while next_id <= last:
            rows = self._get(symbol.upper(), next_id, min(PAGE, last - next_id + 1))
            if not rows:
                return  # the exchange has nothing (yet) at this id
            received_at = _now_ms()
            page = BackfillResult(complete=False)
            for row in rows:
                try:
                    trade = trade_from_rest(symbol, row, received_at)
                except InvalidRecordError as exc:
                    page.bad.append(BadInput(exc.reason, orjson.dumps(row, default=str).decode()))
                    continue
                if trade.trade_id < next_id or trade.trade_id > last:
                    continue
                page.trades.append(trade)
                next_id = trade.trade_id + 1
            page.complete = next_id > last
            yield page, next_id
            if not page.trades:
                return  # no progress: asking again would get the same answer

    def fetch(self, symbol: str, first: int, last: int) -> BackfillResult:
        """Trades ``first..last`` (inclusive) of ``symbol`` in id order; ``complete`` False if some are missing.

        Holds the whole range in memory: for small ranges and tests; ingest goes through :meth:`pages`.
        """
        result = BackfillResult(complete=first > last)
        try:
            for page, _next_id in self.pages(symbol, first, last):
                result.trades.extend(page.trades)
                result.bad.extend(page.bad)
                result.complete = page.complete
        except BackfillError as exc:
            logger.error("backfill failed", extra={"symbol": symbol, "first": first, "last": last, "error": str(exc)})
            result.complete = False
        return result


@dataclass(frozen=True, slots=True)
class Probe:
    """Ask the exchange for trades of ``symbol`` after ``after_id``: a quiet symbol's tail, which no later live
    trade has revealed as a gap yet (the trades printed just before a drop, on a symbol that then went quiet)."""

    symbol: str
    after_id: int


class BackfillWorker:
    """Fills trade-id gaps over REST on its own thread, page by page, so no socket thread ever waits for REST.

    Gaps larger than ``max_trades`` and gaps arriving while ``queue_size`` are already waiting are abandoned:
    counted (``backfill_abandoned``, ``backfill_abandoned_trades``) and logged with their range, never silent.
    Each page is published as it arrives (``publish`` may block: back-pressure), so memory holds one page.
    """

    def __init__(
        self,
        backfiller: BinanceBackfiller,
        publish: Callable[[list[TradeRecord]], int],
        dead_letter: Callable[[str, str, int], None],
        metrics: IngestMetrics,
        exchange: str,
        max_trades: int,
        queue_size: int,
        on_failure: Callable[[BaseException], None] | None = None,
        publish_new: Callable[[list[TradeRecord]], int] | None = None,
    ) -> None:
        self.backfiller = backfiller
        self.publish = publish
        # Probed trades are new to the gap tracker (they go through its check); gap pages are not.
        self.publish_new = publish_new or publish
        self.dead_letter = dead_letter
        self.metrics = metrics
        self.exchange = exchange
        self.max_trades = max_trades
        self.on_failure = on_failure
        self._queue: queue.Queue[Gap | Probe | None] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"backfill-{exchange}", daemon=True)
        self._started = False
        self._start_lock = threading.Lock()

    def submit(self, gap: Gap) -> bool:
        """Queue ``gap`` for backfill (never blocks); False when it was abandoned instead."""
        if gap.size > self.max_trades:
            self._abandon(gap, gap.size, f"larger than INGEST_BACKFILL_MAX_TRADES={self.max_trades}")
            return False
        if self._stop.is_set():
            self._abandon(gap, gap.size, "ingest is stopping")
            return False
        try:
            self._queue.put_nowait(gap)
        except queue.Full:
            self._abandon(gap, gap.size, "the backfill queue is full (INGEST_BACKFILL_QUEUE)")
            return False
        self.metrics.backfill_queued = self._queue.qsize()
        self._ensure_started()
        return True

    def probe(self, probe: Probe) -> bool:
        """Queue a tail probe (never blocks); False when the queue is full or ingest is stopping (tried later)."""
        if self._stop.is_set():
            return False
        try:
            self._queue.put_nowait(probe)
        except queue.Full:
            return False
        self._ensure_started()
        return True

    def _ensure_started(self) -> None:
        with self._start_lock:
            if not self._started:
                self._started = True
                self._thread.start()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every queued gap was handled; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def stop(self, timeout: float = 2.0) -> None:
        """Stop after the current page; gaps still queued are abandoned (counted and logged)."""
        self._stop.set()
        while True:
            try:
                gap = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(gap, Gap):
                self._abandon(gap, gap.size, "ingest is stopping")
            self._queue.task_done()
        self.metrics.backfill_queued = 0
        if self._started:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while True:
                gap = self._queue.get()
                try:
                    if gap is None or self._stop.is_set():
                        if isinstance(gap, Gap):
                            self._abandon(gap, gap.size, "ingest is stopping")
                        if gap is None:
                            return
                        continue
                    if isinstance(gap, Probe):
                        self.fill_tail(gap)
                    else:
                        self.fill(gap)
                finally:
                    self.metrics.backfill_queued = self._queue.qsize()
                    self._queue.task_done()
        except BaseException as exc:  # reported to the runner, which stops ingest with a non-zero exit
            logger.exception("backfill worker died", extra={"exchange": self.exchange})
            if self.on_failure is not None:
                self.on_failure(exc)

    def fill(self, gap: Gap) -> int:
        """Backfill one gap page by page; returns how many trades were published."""
        published = 0
        error: str | None = None
        next_id = gap.first
        try:
            for page, page_next in self.backfiller.pages(gap.symbol, gap.first, gap.last):
                next_id = page_next
                self.metrics.backfill_pages += 1
                now = _now_ms()
                for bad in page.bad:
                    self.dead_letter(f"backfill: {bad.reason}", bad.raw, now)
                count = self.publish(page.trades)
                published += count
                self.metrics.backfilled += count
                if self._stop.is_set():
                    error = "ingest is stopping"
                    break
        except BackfillError as exc:
            error = str(exc)
        missing = gap.last - next_id + 1 if next_id <= gap.last else 0
        extra = {
            "exchange": self.exchange,
            "symbol": gap.symbol,
            "first": gap.first,
            "last": gap.last,
            "backfilled": published,
        }
        if missing:
            self._abandon(Gap(gap.symbol, next_id, gap.last), missing, error or "the exchange did not return them")
            logger.warning("gap only partly backfilled", extra=extra)
        else:
            logger.info("gap backfilled", extra=extra)
        return published

    def fill_tail(self, probe: Probe) -> int:
        """One page of the trades after ``probe.after_id``, published as new trades; returns how many."""
        self.metrics.tail_probes += 1
        try:
            pages = self.backfiller.pages(probe.symbol, probe.after_id + 1, probe.after_id + PAGE)
            page, _next_id = next(pages, (None, 0))
        except BackfillError as exc:
            logger.warning("tail probe failed", extra={"symbol": probe.symbol, "error": str(exc)})
            return 0
        if page is None or not page.trades:
            return 0
        now = _now_ms()
        for bad in page.bad:
            self.dead_letter(f"backfill: {bad.reason}", bad.raw, now)
        count = self.publish_new(page.trades)
        self.metrics.backfilled += count
        self.metrics.tail_backfilled += count
        logger.info(
            "quiet symbol's tail backfilled",
            extra={"exchange": self.exchange, "symbol": probe.symbol, "after": probe.after_id, "backfilled": count},
        )
        return count

    def _abandon(self, gap: Gap, missing: int, reason: str) -> None:
        self.metrics.backfill_abandoned += 1
        self.metrics.backfill_abandoned_trades += missing
        logger.error(
            "gap not backfilled",
            extra={
                "exchange": self.exchange,
                "symbol": gap.symbol,
                "first": gap.first,
                "last": gap.last,
                "missing": missing,
                "reason": reason,
            },
        )


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(float(value), 0.0) if value is not None else default
    except ValueError:
        return default
