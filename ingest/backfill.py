"""Gap backfill over REST: the :class:`Backfiller` protocol every exchange's client follows, the shared polite
HTTP client (:class:`RestClient`) and the :class:`BackfillWorker` thread that fills gaps page by page. Each
exchange's client lives in its package (``ingest/exchanges/<name>/backfill.py``)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Protocol

import orjson

from ingest.exchanges.base import BadInput
from ingest.gaps import Gap
from ingest.metrics import IngestMetrics
from ingest.records import InvalidRecordError, TradeRecord

logger = logging.getLogger(__name__)

PAGE = 1000  # every exchange's maximum page


class BackfillError(RuntimeError):
    """The missing range could not be fetched (network down, repeated server errors, a ban)."""


@dataclass
class BackfillResult:
    """What a backfill brought back: trades in id order, rows refused, whether the range was covered, and the
    ranges (first, last) the exchange's REST no longer has (older than the history it serves)."""

    trades: list[TradeRecord] = field(default_factory=list)
    bad: list[BadInput] = field(default_factory=list)
    complete: bool = True
    unrecoverable: list[tuple[int, int]] = field(default_factory=list)
    #: for REST serving only the newest trades (Bybit): the trade times (after, before), epoch ms, between which
    #: trades may be lost because the answer did not reach back to the last trade seen; their number is unknown
    lost_window: tuple[int | None, int] | None = None


class Backfiller(Protocol):
    """An exchange's REST client for missing trade ids (what :class:`BackfillWorker` and the runner take)."""

    def pages(
        self, symbol: str, first: int, last: int, after_time: int | None = None
    ) -> Iterator[tuple[BackfillResult, int]]:
        """Trades ``first..last`` of ``symbol`` in id order, a page at a time, each with the next id still wanted.

        ``after_time`` is the trade time (epoch ms) of trade ``first - 1`` when known (REST that pages by time
        needs it). A page that cannot be fetched raises :class:`BackfillError`.
        """
        ...


def now_ms() -> int:
    """The wall clock in epoch ms (a backfilled page's receive time)."""
    return time.time_ns() // 1_000_000


RestRow = Callable[[str, Any, int], TradeRecord]
"""An exchange's REST row as a record: ``(symbol, row, received_at)``; :class:`InvalidRecordError` if refused."""


def collect(
    page: BackfillResult,
    rows: Iterable[Any],
    symbol: str,
    convert: RestRow,
    row_id: Callable[[Any], int | None],
    next_id: int,
    last: int,
) -> int:
    """Add the rows (ascending ids) within ``next_id..last`` of ``symbol`` to ``page``; returns the next id still
    wanted.

    Ids the exchange skipped inside the range are ``unrecoverable`` (it answers from where its history starts).
    A refused row is dead-lettered when its id is in the range (or unknown); its id counts as received.
    """
    received_at = now_ms()
    for row in rows:
        known = row_id(row)
        if known is not None and known > last:
            if next_id <= last:  # the answer went past the range: the exchange skipped the rest of it
                page.unrecoverable.append((next_id, last))
                next_id = last + 1
            break
        if known is not None and known < next_id:
            continue  # before the range (a page's overlap)
        try:
            trade = convert(symbol, row, received_at)
        except InvalidRecordError as exc:
            page.bad.append(BadInput(exc.reason, orjson.dumps(row, default=str).decode()))
            trade_id = known
        else:
            trade_id = trade.trade_id
            if not next_id <= trade_id <= last:
                continue
            page.trades.append(trade)
        if trade_id is None:
            continue
        if trade_id > next_id:
            page.unrecoverable.append((next_id, trade_id - 1))
        next_id = trade_id + 1
    return next_id


class RestClient:
    """GETs JSON from an exchange's REST, politely: at most one request per ``min_interval`` seconds, HTTP 429 and
    418 answered by waiting ``Retry-After`` (else a doubling backoff), server and network errors retried with
    that backoff, a rate limit reported in the body (:meth:`_limited`) likewise; after ``attempts`` tries, or on
    another client error, :class:`BackfillError`."""

    #: the pause between requests the exchange's published public limit asks for (0: none)
    min_interval: float = 0.0

    def __init__(
        self,
        rest_url: str,
        timeout: float = 10.0,
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = 120.0,
        min_interval: float | None = None,
    ) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.sleep = sleep
        self.max_wait = max_wait
        if min_interval is not None:
            self.min_interval = min_interval
        self.requests = 0
        self.rate_limited = 0  # answers that said "too many requests"
        self._last_request: float | None = None

    def _pace(self) -> None:
        if self.min_interval and self._last_request is not None:
            wait = self._last_request + self.min_interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)

    def _note(self, headers: Message) -> None:
        """Read what the response headers say about the limits (Binance's used weight)."""

    def _decode(self, raw: bytes) -> Any:
        """The JSON body (``ValueError`` if it is not JSON)."""
        return orjson.loads(raw)

    def _limited(self, body: Any) -> str | None:
        """The rate-limit error a 200 answer carries in its body (Kraken), else None."""
        return None

    def get_json(self, path: str, params: dict[str, Any], what: str) -> tuple[Any, Message]:
        """The decoded JSON body and the headers of ``GET <rest_url><path>?<params>``."""
        url = f"{self.rest_url}{path}?{urllib.parse.urlencode(params)}"
        delay = 0.5
        last_error: object = None
        for _attempt in range(self.attempts):
            self._pace()
            try:
                self.requests += 1
                self._last_request = time.monotonic()
                with urllib.request.urlopen(url, timeout=self.timeout) as response:
                    headers = response.headers
                    self._note(headers)
                    body = self._decode(response.read())
                limited = self._limited(body)
                if limited is None:
                    return body, headers
                last_error = limited
                self._rate_limited(what, 200, delay)
            except urllib.error.HTTPError as exc:
                last_error = exc
                if exc.code in (418, 429):
                    self._rate_limited(what, exc.code, _retry_after(exc.headers.get("Retry-After"), default=delay))
                elif exc.code >= 500:
                    self.sleep(delay)
                else:
                    raise BackfillError(f"{what}: HTTP {exc.code}") from exc
            except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: not JSON
                last_error = exc
                self.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise BackfillError(f"{what} failed: {last_error}")

    def pages(
        self, symbol: str, first: int, last: int, after_time: int | None = None
    ) -> Iterator[tuple[BackfillResult, int]]:
        """See :meth:`Backfiller.pages`; each exchange's client implements it."""
        raise NotImplementedError

    def fetch(self, symbol: str, first: int, last: int, after_time: int | None = None) -> BackfillResult:
        """Trades ``first..last`` (inclusive) of ``symbol`` in id order; ``complete`` False if some are missing.

        Holds the whole range in memory: for small ranges and tests; ingest goes through :meth:`pages`.
        """
        result = BackfillResult(complete=first > last)
        try:
            for page, _next_id in self.pages(symbol, first, last, after_time):
                result.trades.extend(page.trades)
                result.bad.extend(page.bad)
                result.unrecoverable.extend(page.unrecoverable)
                result.complete = page.complete
        except BackfillError as exc:
            logger.error("backfill failed", extra={"symbol": symbol, "first": first, "last": last, "error": str(exc)})
            result.complete = False
        return result

    def _rate_limited(self, what: str, status: int, wait: float) -> None:
        self.rate_limited += 1
        logger.warning("backfill rate limited", extra={"status": status, "retry_after": wait, "request": what})
        self.sleep(min(wait, self.max_wait))


@dataclass(frozen=True, slots=True)
class Probe:
    """Ask the exchange for trades of ``symbol`` after ``after_id``: a quiet symbol's tail, which no later live
    trade has revealed as a gap yet (the trades printed just before a drop, on a symbol that then went quiet)."""

    symbol: str
    after_id: int
    after_time: int | None = None  # the trade time of ``after_id`` (epoch ms), when known
    #: the time of the first trade a new connection delivered (a reconnect's catch-up): trades from then on came live
    before_time: int | None = None


class BackfillWorker:
    """Fills trade-id gaps over REST on its own thread, page by page, so no socket thread ever waits for REST.

    Gaps larger than ``max_trades`` and gaps arriving while ``queue_size`` are already waiting are abandoned:
    counted (``backfill_abandoned``, ``backfill_abandoned_trades``) and logged with their range, never silent.
    Ids older than the exchange's REST still serves are unrecoverable: counted apart
    (``backfill_unrecoverable``, ``backfill_unrecoverable_trades``) and logged with their range.
    Each page is published as it arrives (``publish`` may block: back-pressure), so memory holds one page.
    """

    def __init__(
        self,
        backfiller: Backfiller,
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
        """Queue a tail probe (never blocks); False when the queue is full or ingest is stopping. A quiet symbol's
        probe is tried again later; a reconnect's catch-up (``before_time`` set) has no later turn, so the window it
        was to fill is reported as possibly lost instead."""
        if self._stop.is_set():
            self._catch_up_skipped(probe, "ingest is stopping")
            return False
        try:
            self._queue.put_nowait(probe)
        except queue.Full:
            self._catch_up_skipped(probe, "the backfill queue is full (INGEST_BACKFILL_QUEUE)")
            return False
        self._ensure_started()
        return True

    def _catch_up_skipped(self, probe: Probe, reason: str) -> None:
        if probe.before_time is not None:
            self._lost_window(probe.symbol, probe.after_time, probe.before_time, reason)

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
            elif isinstance(gap, Probe):
                self._catch_up_skipped(gap, "ingest is stopping")
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
                        elif isinstance(gap, Probe):
                            self._catch_up_skipped(gap, "ingest is stopping")
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
        lost = 0  # older than the exchange's REST history
        error: str | None = None
        next_id = gap.first
        try:
            for page, page_next in self.backfiller.pages(gap.symbol, gap.first, gap.last, gap.after_time):
                next_id = page_next
                self.metrics.backfill_pages += 1
                now = now_ms()
                for first, last in page.unrecoverable:
                    self._unrecoverable(gap.symbol, first, last)
                    lost += last - first + 1
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
            "unrecoverable": lost,
        }
        if missing:
            self._abandon(Gap(gap.symbol, next_id, gap.last), missing, error or "the exchange did not return them")
        if missing or lost:
            logger.warning("gap only partly backfilled", extra=extra)
        else:
            logger.info("gap backfilled", extra=extra)
        return published

    def fill_tail(self, probe: Probe) -> int:
        """One page of the trades after ``probe.after_id``, published as new trades; returns how many."""
        self.metrics.tail_probes += 1
        try:
            # Ids the exchange skips here come back as a gap through the id check: not counted twice.
            pages = self.backfiller.pages(probe.symbol, probe.after_id + 1, probe.after_id + PAGE, probe.after_time)
            page, _next_id = next(pages, (None, 0))
        except BackfillError as exc:
            logger.warning("tail probe failed", extra={"symbol": probe.symbol, "error": str(exc)})
            # A quiet symbol is probed again later; a reconnect's catch-up is not, so what it was to fetch is lost.
            self._catch_up_skipped(probe, f"the catch-up failed: {exc}")
            return 0
        if page is not None and page.lost_window is not None:
            after, before = page.lost_window
            if probe.before_time is not None:
                before = min(before, probe.before_time)  # later trades came over the new connection
            self._lost_window(probe.symbol, after, before)
        if page is not None and probe.before_time is not None:
            # A catch-up fills the hole before the new connection's first trade, nothing later. Trades after it are
            # the live stream's; when REST answers after that connection dropped too, they lie beyond the next hole,
            # and publishing them would move the id check past it: the next catch-up would start after them and
            # leave the hole's older trades lost and unreported.
            before_time = probe.before_time
            page.trades = [t for t in page.trades if t.trade_time <= before_time]
        if page is None or not page.trades:
            return 0
        now = now_ms()
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

    def _unrecoverable(self, symbol: str, first: int, last: int) -> None:
        self.metrics.backfill_unrecoverable += 1
        self.metrics.backfill_unrecoverable_trades += last - first + 1
        logger.error(
            "trades older than the exchange's REST history: not recoverable",
            extra={
                "exchange": self.exchange,
                "symbol": symbol,
                "first": first,
                "last": last,
                "missing": last - first + 1,
            },
        )

    def _lost_window(
        self,
        symbol: str,
        after: int | None,
        before: int,
        reason: str = "older than the newest trades the exchange's REST serves",
    ) -> None:
        # Counted as one unrecoverable range: how many trades it held is unknown (the ids say nothing).
        self.metrics.backfill_unrecoverable += 1
        logger.error(
            f"trades between these times may be lost: {reason}",
            extra={"exchange": self.exchange, "symbol": symbol, "after_time": after, "before_time": before},
        )

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
