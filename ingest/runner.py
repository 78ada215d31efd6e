"""The ingest pipeline of one process: connections -> parser -> gap check/backfill -> producer.

``manage.py ingest`` only parses arguments, builds an :class:`IngestRunner` and forwards signals to it.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings

from ingest.backfill import Backfiller, BackfillWorker, Probe
from ingest.client import FrameHandler, WsClient, connection_attempts_limiter
from ingest.exchanges import UnknownExchangeError, get
from ingest.exchanges.base import ERROR, SEQUENCE_GAP, SHUTDOWN, ConnectionPlan, Exchange, FrameParser, to_text
from ingest.gaps import DUPLICATE, GAP, NEXT, Gap, TradeIdContinuity
from ingest.metrics import IngestMetrics
from ingest.producer import TradeProducer
from ingest.records import DeadLetter, TradeRecord
from ingest.resume import ResumePoint

logger = logging.getLogger(__name__)


#: After this many duplicates with not one trade accepted, ingest says once (WARNING) why it publishes nothing.
ALL_DUPLICATES_WARN_AFTER = 1000


class SettingsError(ValueError):
    """A setting is unusable; the message names it."""


class IngestThreadError(RuntimeError):
    """A connection or worker thread died: the process must exit non-zero so its supervisor restarts it."""


def check_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    """``value`` if it is an absolute URL with one of ``schemes`` and a host, else :class:`SettingsError`."""
    parsed = urllib.parse.urlsplit(value or "")
    if parsed.scheme not in schemes or not parsed.hostname:
        raise SettingsError(f"{name}={value!r} is not a {' or '.join(schemes)} URL with a host")
    try:
        parsed.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise SettingsError(f"{name}={value!r} has an invalid port") from None
    if parsed.netloc.endswith(":"):
        raise SettingsError(f"{name}={value!r} has an empty port")
    return value


@dataclass(frozen=True)
class ExchangeEndpoints:
    """The validated WebSocket URL and, for an exchange with REST backfill, REST URL of one exchange."""

    exchange: str
    ws_url: str
    rest_url: str | None


def load_config(exchange: str) -> ExchangeEndpoints:
    """Read and check the URLs ``exchange`` needs; :class:`SettingsError` names a bad setting."""
    try:
        descriptor = get(exchange)
    except UnknownExchangeError as exc:
        raise SettingsError(str(exc)) from None
    name = descriptor.ws_url_setting
    ws_url = check_url(name, getattr(settings, name), ("ws", "wss"))
    rest_url = None
    # The REST base only of an exchange that can backfill missing ids over it.
    if descriptor.backfiller is not None and descriptor.rest_url_setting is not None:
        rest_name = descriptor.rest_url_setting
        rest_url = check_url(rest_name, getattr(settings, rest_name), ("http", "https"))
    return ExchangeEndpoints(exchange, ws_url, rest_url)


def make_backfiller(config: ExchangeEndpoints) -> Backfiller | None:
    """The REST backfill client of ``config.exchange`` (None without a REST URL), paced as
    ``INGEST_BACKFILL_MIN_INTERVAL_S`` says, else as the exchange's published public limit asks."""
    backfiller = get(config.exchange).backfiller
    if config.rest_url is None or backfiller is None:
        return None
    return backfiller(config.rest_url, min_interval=settings.INGEST_BACKFILL_MIN_INTERVAL_S)


class FrameProcessor:
    """Handles every frame of one exchange: trades (gap-checked, backfilled, de-duplicated), DLQ, events."""

    def __init__(
        self,
        adapter: Exchange,
        parser: FrameParser,
        producer: TradeProducer,
        metrics: IngestMetrics,
        tracker: TradeIdContinuity | None = None,
        backfiller: Backfiller | None = None,
        max_trades: int | None = None,
        on_limit: Callable[[], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.adapter = adapter
        self.parser = parser
        self.producer = producer
        self.metrics = metrics
        self.tracker = tracker if tracker is not None else adapter.continuity()
        self.backfiller = backfiller
        self.backfill = (
            BackfillWorker(
                backfiller,
                self.emit,
                self.dead_letter,
                metrics,
                adapter.name,
                max_trades=settings.INGEST_BACKFILL_MAX_TRADES,
                queue_size=settings.INGEST_BACKFILL_QUEUE,
                on_failure=on_failure,
                publish_new=self.emit_new,
            )
            if backfiller is not None
            else None
        )
        # Quiet-symbol probes (tail gaps): when each symbol's last trade was seen, and the probe interval now.
        self.quiet_probe_s = settings.INGEST_QUIET_PROBE_S
        self.clock: Callable[[], float] = time.monotonic
        self._seen_at: dict[str, float] = {}
        self._probe_at: dict[str, float] = {}
        self._probe_every: dict[str, float] = {}
        self.max_trades = max_trades
        self.on_limit = on_limit
        self.source = f"ingest:{adapter.name}"
        self._lock = threading.Lock()  # connections of one exchange share the tracker and the limit
        self._last_parser_log = 0.0
        self._warned_all_duplicates = False
        # The last trade seen per symbol when a connection (re)opened, until its first trades ask REST after it.
        self._catch_up_from: dict[str, tuple[int, int | None]] | None = None

    def __call__(self, raw: bytes | str, received_at: int) -> bool:
        """Process one frame; True when the server announced a shutdown (reconnect now)."""
        metrics = self.metrics
        metrics.messages_received += 1
        try:
            result = self.parser.parse(raw, received_at)
        except Exception as exc:  # noqa: BLE001 - a parser bug must cost one frame (dead-lettered), not the thread
            self._parser_failed(exc, raw, received_at)
            return False
        recycle = False
        for bad in result.bad:
            self.dead_letter(bad.reason, bad.raw, received_at)
        for event in result.events:
            recycle = self._event(event.kind, event.detail) or recycle
        if result.trades:
            if metrics.first_received_at is None:
                metrics.first_received_at = received_at / 1000
            with self._lock:
                self._publish(result.trades)
            if self._catch_up_from is not None:
                self._catch_up(result.trades)
        return recycle

    def _parser_failed(self, exc: Exception, raw: bytes | str, received_at: int) -> None:
        self.metrics.parser_errors += 1
        now = time.monotonic()
        if now - self._last_parser_log >= 1.0:  # a parser bug hits every frame: one line a second at most
            self._last_parser_log = now
            logger.error(
                "parser raised: frame dead-lettered",
                exc_info=exc,
                extra={"exchange": self.adapter.name, "parser_errors": self.metrics.parser_errors},
            )
        self.dead_letter(f"parser error: {type(exc).__name__}: {exc}"[:500], to_text(raw), received_at)

    def dead_letter(self, reason: str, raw: str, received_at: int) -> None:
        """Count a refused input and send it to the DLQ."""
        self.metrics.malformed += 1
        self.producer.dead_letter(DeadLetter(source=self.source, reason=reason, raw=raw, received_at=received_at))

    def _event(self, kind: str, detail: dict[str, object]) -> bool:
        if kind == SEQUENCE_GAP:
            self.metrics.gaps += 1
            logger.warning("frames missed (sequence gap)", extra={"exchange": self.adapter.name, **detail})
        elif kind == ERROR:
            logger.error("exchange reported an error", extra={"exchange": self.adapter.name, "detail": detail})
        elif kind == SHUTDOWN:
            logger.warning("exchange announced a shutdown", extra={"exchange": self.adapter.name})
            return True
        return False

    def _publish(self, trades: list[TradeRecord]) -> None:
        tracker = self.tracker
        if tracker is None:
            self._emit(trades)
            return
        accepted = []
        check = tracker.check
        seen_at = self._seen_at
        now = self.clock()
        for trade in trades:
            seen_at[trade.symbol] = now
            status = check(trade.symbol, trade.trade_id, trade.trade_time)
            if status == NEXT:
                accepted.append(trade)
            elif status == DUPLICATE:
                self.metrics.duplicates += 1
            elif status == GAP:
                # The missing range goes to the backfill worker; the stream goes on without waiting for REST.
                self._fill_gap(tracker)
                tracker.advance(trade.symbol, trade.trade_id, trade.trade_time)
                accepted.append(trade)
        self._emit(accepted)
        if not accepted and not self._warned_all_duplicates:
            self.warn_if_all_duplicates()

    def warn_if_all_duplicates(self, at_least: int = ALL_DUPLICATES_WARN_AFTER) -> bool:
        """Log once per process, at WARNING, that every trade so far was a duplicate (``at_least`` of them and not one
        accepted): a replay of ids the topic already holds, which ingest drops silently otherwise. True if it did."""
        metrics = self.metrics
        if self._warned_all_duplicates or metrics.trades_accepted or metrics.duplicates < max(at_least, 1):
            return False
        self._warned_all_duplicates = True
        topic = settings.KAFKA_TRADES_TOPIC
        logger.warning(
            f"every trade received so far was a duplicate ({metrics.duplicates}), nothing is published: the topic "
            f"{topic} already holds these trade ids (ingest resumes after the last id per symbol it finds there), "
            "as when a replay restarts at its recording's ids. Replay into a fresh topic (KAFKA_TRADES_TOPIC), and "
            "run simulate_exchange with --state FILE so that a restarted market continues its ids",
            extra={"exchange": self.adapter.name, "duplicates": metrics.duplicates, "topic": topic},
        )
        return True

    def emit(self, trades: list[TradeRecord]) -> int:
        """Publish trades from another thread (the backfill worker), under the trade limit; returns accepted."""
        with self._lock:
            before = self.metrics.trades_accepted
            self._emit(trades)
            return self.metrics.trades_accepted - before

    def emit_new(self, trades: list[TradeRecord]) -> int:
        """Publish trades fetched after the last id seen (a tail probe): through the gap check, like live ones."""
        with self._lock:
            before = self.metrics.trades_accepted
            self._publish(trades)
            return self.metrics.trades_accepted - before

    def resume(self, points: Mapping[str, ResumePoint]) -> None:
        """Start after what Kafka already holds (:mod:`ingest.resume`): each symbol's id check continues from its
        last published id, and the holes below it go to backfill."""
        tracker = self.tracker
        if tracker is None:
            return
        with self._lock:
            for symbol, point in points.items():
                if symbol not in tracker.last:
                    tracker.seed(symbol, point.last_id, point.times.get(point.last_id))
                    self._seen_at.setdefault(symbol, 0.0)  # quiet until a trade says otherwise: probe soon
                if not self.adapter.consecutive_ids:
                    continue  # ids that are not consecutive have no holes: the catch-up on connect fetches back
                for first, last in point.holes:
                    self.metrics.resumed_holes += 1
                    self.metrics.gaps += 1
                    self.metrics.missing_trades += last - first + 1
                    if self.backfill is not None:
                        self.backfill.submit(Gap(symbol, first, last, point.times.get(first - 1)))
                    else:
                        logger.warning(
                            "trade ids missing on Kafka (no backfill by id for this exchange)",
                            extra={"exchange": self.adapter.name, "symbol": symbol, "first": first, "last": last},
                        )

    def connected(self) -> None:
        """A connection (re)opened. For an exchange whose ids reveal no gap (Bybit), note the last trade seen of
        every symbol: the first trades of the new connection then ask REST for what came after them (see
        :meth:`_catch_up`), since the drop may have missed some and no later id would say so."""
        if self.adapter.consecutive_ids or self.backfill is None or self.tracker is None:
            return
        with self._lock:
            times = self.tracker.times
            self._catch_up_from = {s: (last_id, times.get(s)) for s, last_id in self.tracker.last.items()}

    def _catch_up(self, first: list[TradeRecord]) -> int:
        """Queue the probes :meth:`connected` noted, once the new connection delivers trades (``first``): REST is
        asked only when the subscription is live, so nothing falls between its answer and the stream. Returns the
        probes queued."""
        with self._lock:
            points, self._catch_up_from = self._catch_up_from, None
        if not points or self.backfill is None:
            return 0
        live: dict[str, int] = {}
        for trade in first:
            live.setdefault(trade.symbol, trade.trade_time)
        return sum(self.backfill.probe(Probe(s, last_id, at, live.get(s))) for s, (last_id, at) in points.items())

    def probe_quiet(self, now: float | None = None) -> int:
        """Ask REST for trades after the last id of every symbol quiet for ``INGEST_QUIET_PROBE_S`` (then twice as
        long each time it finds nothing, up to 5 minutes): a gap at a quiet symbol's tail is found without waiting
        for its next trade. Returns the probes queued."""
        if self.backfill is None or self.tracker is None or not self.quiet_probe_s:
            return 0
        now = self.clock() if now is None else now
        queued = 0
        with self._lock:
            last_ids = dict(self.tracker.last)
            times = dict(self.tracker.times)
        for symbol, last_id in last_ids.items():
            seen = self._seen_at.get(symbol, now)
            probed = self._probe_at.get(symbol)
            if probed is None or seen >= probed:
                wait = self.quiet_probe_s  # trades since the last probe (or it found some): the base interval
            else:
                wait = min(self._probe_every.get(symbol, self.quiet_probe_s) * 2, 300.0)  # it found nothing
            if now - (seen if probed is None else max(seen, probed)) < wait:
                continue
            if self.backfill.probe(Probe(symbol, last_id, times.get(symbol))):
                queued += 1
                self._probe_at[symbol] = now
                self._probe_every[symbol] = wait
        return queued

    def _emit(self, trades: list[TradeRecord]) -> None:
        if not trades:
            return
        limit = self.max_trades
        if limit is not None:
            room = limit - self.metrics.trades_accepted
            if room <= 0:
                return
            if len(trades) >= room:
                self.producer.publish(trades[:room])
                if self.on_limit is not None:
                    self.on_limit()
                return
        self.producer.publish(trades)

    def _fill_gap(self, tracker: TradeIdContinuity) -> None:
        gap = tracker.gap
        assert gap is not None  # set by check() when it returned GAP
        self.metrics.gaps += 1
        self.metrics.missing_trades += gap.size
        if self.backfill is None:
            logger.warning(
                "trade ids missing (no backfill by id for this exchange)",
                extra={"exchange": self.adapter.name, "symbol": gap.symbol, "first": gap.first, "last": gap.last},
            )
            return
        self.backfill.submit(gap)

    def wait_backfill(self, timeout: float | None = None) -> bool:
        """Block until every queued gap was backfilled (or abandoned); False on timeout."""
        return self.backfill is None or self.backfill.wait_idle(timeout)

    def stop_backfill(self, timeout: float = 2.0) -> None:
        """Stop the backfill worker after its current page; queued gaps are abandoned (counted, logged)."""
        if self.backfill is not None:
            self.backfill.stop(timeout)


class IngestRunner:
    """Owns the connections of one exchange and stops them cleanly (then the caller flushes the producer)."""

    def __init__(
        self,
        adapter: Exchange,
        symbols: list[str],
        producer: TradeProducer,
        metrics: IngestMetrics,
        backfiller: Backfiller | None = None,
        max_trades: int | None = None,
        stop: threading.Event | None = None,
        client_factory: Callable[..., WsClient] = WsClient,
        trades: bool = True,
        extra: Sequence[tuple[ConnectionPlan, FrameHandler]] = (),
        tick: Callable[[], None] | None = None,
    ) -> None:
        """Connections for ``symbols``: the trade streams (unless ``trades`` is False) and the ``extra`` ones (other
        channels: the books' depth streams, each with its own frame handler); ``tick`` runs every half second."""
        self.adapter = adapter
        self.symbols = adapter.normalise_symbols(symbols)
        if not self.symbols:
            raise SettingsError("--symbols: give at least one symbol")
        self.producer = producer
        self.metrics = metrics
        self.stop = stop or threading.Event()
        self.processor = FrameProcessor(
            adapter,
            adapter.parser(),
            producer,
            metrics,
            backfiller=backfiller,
            max_trades=max_trades,
            on_limit=self.stop.set,
            on_failure=self._failed,
        )
        self.failures: list[str] = []
        attempts = connection_attempts_limiter()  # the exchange counts attempts per IP, not per connection
        self.clients = [
            client_factory(plan, self.processor, self.stop, on_connect=self._on_connect, attempts=attempts)
            for plan in (adapter.plans(self.symbols) if trades else ())
        ]
        # A channel's handler may want to know each (re)connect (a books feed: the new connection's subscriptions
        # bring new snapshots): its ``connection_started`` method, when it has one.
        self.clients += [
            client_factory(
                plan, handler, self.stop, on_connect=getattr(handler, "connection_started", None), attempts=attempts
            )
            for plan, handler in extra
        ]
        self.tick = tick

    @property
    def record_symbols(self) -> list[str]:
        """The symbols as trade records (and Kafka keys) spell them: the exchange's own, upper case (the
        subscription spelling may differ: Binance streams are lower case)."""
        return [self.adapter.spelling.record(s) for s in self.symbols]

    def resume(self, points: Mapping[str, ResumePoint]) -> None:
        """Continue after the trades Kafka already holds (see :meth:`FrameProcessor.resume`)."""
        wanted = set(self.record_symbols)
        self.processor.resume({s: p for s, p in points.items() if s in wanted})

    def _on_connect(self) -> None:
        self.processor.parser.connection_reset()
        self.metrics.reconnects = sum(max(client.connections - 1, 0) for client in self.clients)
        self.processor.connected()

    def _failed(self, exc: BaseException, name: str | None = None) -> None:
        """A thread died: record it and stop everything (``run`` then raises :class:`IngestThreadError`)."""
        self.failures.append(f"{name or threading.current_thread().name}: {type(exc).__name__}: {exc}")
        self.metrics.thread_failures += 1
        self.stop.set()

    def _guarded(self, client: WsClient) -> None:
        try:
            client.run()
        except BaseException as exc:
            logger.exception("connection thread died", extra={"exchange": self.adapter.name})
            self._failed(exc)
            return
        if not self.stop.is_set():
            self._failed(RuntimeError("the connection loop returned before ingest was stopped"))

    def run(self) -> None:
        """Run every connection until ``stop`` is set (signal or ``max_trades`` reached).

        Raises :class:`IngestThreadError` when a connection or the backfill worker died.
        """
        threads = [
            threading.Thread(target=self._guarded, args=(client,), name=f"ws-{self.adapter.name}-{index}", daemon=True)
            for index, client in enumerate(self.clients)
        ]
        for thread in threads:
            thread.start()
        try:
            while not self.stop.wait(0.5):
                self.processor.probe_quiet()
                if self.tick is not None:
                    self.tick()
        finally:
            self.stop.set()
            self.producer.release()  # a thread waiting for buffer room gives up now
            for thread in threads:
                thread.join(timeout=10)
            self.processor.stop_backfill()
            # A replay shorter than the threshold says it at the end at least.
            self.processor.warn_if_all_duplicates(at_least=1)
        if self.failures:
            raise IngestThreadError("; ".join(self.failures))
