"""The one Kafka producer of an ingest process: trades to ``market.trades``, dead letters to the DLQ, and book
messages to ``market.books`` (:meth:`TradeProducer.publish_books`, only with the books channel).

acks=all with idempotence, batching (linger + large batches) and compression. Records are appended to
kafka-python's batches directly (:class:`BatchAppender`) and counted by one callback per batch.

No accepted record is dropped: every record is held (key, value, receipt time) until the broker acknowledges
its batch. A batch that fails for a reason that may pass (a broker outage: the delivery timeout expires) is
re-sent by a fresh ``KafkaProducer`` (kafka-python's idempotent sequence state is not trustworthy after expired
batches; consumers de-duplicate on (exchange, symbol, trade_id), so a re-sent record is harmless). Only
refusals that can never pass (a record larger than the topic allows) are dropped, counted and logged.

What is held is bounded (``INGEST_BUFFER_TRADES`` records): when the bound is reached, :meth:`publish` blocks
the calling thread (the WebSocket reader: back-pressure) until acknowledgements make room.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from kafka import KafkaProducer
from kafka import errors as kafka_errors
from kafka.partitioner.default import murmur2
from kafka.structs import TopicPartition

from cryptoproject.kafka import client_config
from cryptoproject.kafka_internals import BatchAppender, OpenBatch, force_close, register_topics
from ingest.metrics import IngestMetrics
from ingest.records import DeadLetter, TradeRecord

logger = logging.getLogger(__name__)

PRODUCER_OPTIONS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 20,
    "batch_size": 256 * 1024,
    # zstd: ~3x cheaper in CPU than gzip for these JSON batches, similar ratio (zstandard is a base dependency)
    "compression_type": "zstd",
    "retries": 2**31 - 1,
    "max_in_flight_requests_per_connection": 5,
}
#: refusals that no retry can change: the records are dropped, counted in ``publish_errors`` and logged
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidRecordError,
    kafka_errors.InvalidTopicError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
)
#: how often the keeper thread looks for failed batches to re-send when nothing wakes it
KEEPER_INTERVAL = 1.0


class TradeProducer:
    """Publishes records; keyed ``<exchange>:<symbol>`` so each symbol stays ordered in one partition.

    The partition of each key is computed once with Kafka's own murmur2 rule (the same as Java clients),
    instead of hashing every message. Records go through :class:`BatchAppender` (``fast=True``, the default)
    or through ``KafkaProducer.send()``. Thread-safe: connections, the backfill worker and the keeper thread
    (which re-sends failed batches through a fresh producer) share it.
    """

    def __init__(
        self,
        metrics: IngestMetrics,
        producer: KafkaProducer | None = None,
        trades_topic: str | None = None,
        dlq_topic: str | None = None,
        fast: bool = True,
        books_topic: str | None = None,
        buffer_trades: int | None = None,
        **options: Any,
    ) -> None:
        self.metrics = metrics
        self.trades_topic = trades_topic or settings.KAFKA_TRADES_TOPIC
        self.dlq_topic = dlq_topic or settings.KAFKA_DLQ_TOPIC
        self.books_topic = books_topic or settings.KAFKA_BOOKS_TOPIC
        self.books = False  # set by publish_books' first call: the books topic is then registered on recovery
        self.buffer_trades = buffer_trades or settings.INGEST_BUFFER_TRADES
        self.options = {**PRODUCER_OPTIONS, "delivery_timeout_ms": settings.INGEST_DELIVERY_TIMEOUT_MS, **options}
        # kafka-python wants delivery_timeout >= request_timeout + linger: a short delivery timeout shortens both.
        self.options.setdefault(
            "request_timeout_ms", max(min(30_000, self.options["delivery_timeout_ms"] - self.options["linger_ms"]), 1)
        )
        self.fast = fast
        self.producer = producer or KafkaProducer(**client_config(), **self.options)
        self._routes: dict[tuple[str, str], tuple[bytes, TopicPartition]] = {}
        self._partition_counts: dict[str, int] = {}
        self._last_error_log: dict[str, float] = {}
        self._appender = self._make_appender(self.producer)
        # What is held: every record accepted and not yet acknowledged (or refused for good), failed batches
        # waiting to be re-sent included. ``_cond`` guards the count and the re-send list.
        self._cond = threading.Condition()
        self._held = 0
        self._retry: list[OpenBatch] = []
        self._publish_lock = threading.RLock()  # one appender user at a time; the keeper swaps producers under it
        self._released = threading.Event()  # stop waiting for room (shutdown)
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._keeper = threading.Thread(target=self._keep, name="ingest-producer-keeper", daemon=True)
        self._keeper.start()

    # ------------------------------------------------------------------------------------------- set-up
    def _make_appender(self, producer: KafkaProducer) -> BatchAppender | None:
        if not self.fast:
            return None
        if BatchAppender.supported(producer):
            return BatchAppender(producer, self._on_batch_done)
        logger.warning(  # pragma: no cover - another kafka-python than the pinned one
            "kafka-python internals changed: publishing with send(), one future per record"
        )
        return None  # pragma: no cover

    def prepare(self, books: bool = False) -> None:
        """Learn the partition counts of the topics now (the broker is up at start; later it may not be); ``books``:
        the books topic's too."""
        self.books = self.books or books
        for topic in (self.trades_topic, self.dlq_topic, *((self.books_topic,) if self.books else ())):
            self._partition_count(topic)

    def _partition_count(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._partition_counts[topic] = len(self.producer.partitions_for(topic))
        return count

    def _route(self, trade: TradeRecord) -> tuple[bytes, TopicPartition]:
        """The key and partition of ``trade``'s symbol, computed once per symbol."""
        route = self._routes.get((trade.exchange, trade.symbol))
        if route is None:
            key = trade.key
            partition = (murmur2(key) & 0x7FFFFFFF) % self._partition_count(self.trades_topic)
            route = (key, TopicPartition(self.trades_topic, partition))
            self._routes[(trade.exchange, trade.symbol)] = route
        return route

    # ------------------------------------------------------------------------------------------- publishing
    @property
    def held(self) -> int:
        """Records accepted and not yet acknowledged (what a shutdown now would not deliver)."""
        return self._held

    def publish(self, trades: Iterable[TradeRecord]) -> int:
        """Hand trades to the producer (asynchronous); returns how many were accepted.

        Blocks while the buffer is full (back-pressure); returns 0 without accepting them when
        :meth:`release` was called meanwhile (shutdown).
        """
        batch = trades if isinstance(trades, list) else list(trades)
        if not batch or not self._reserve(len(batch)):
            return 0
        appended = 0
        try:
            with self._publish_lock:
                route, append = self._route, self._append_record
                routes = self._routes
                for trade in batch:
                    key, tp = routes.get((trade.exchange, trade.symbol)) or route(trade)
                    append(tp, key, trade.encode(), trade.received_at)
                    appended += 1
        finally:
            if appended < len(batch):  # an exception (no metadata for a new symbol): only what was appended is held
                self._unreserve(len(batch) - appended)
            self.metrics.trades_accepted += appended
        return appended

    def publish_books(self, key: bytes, values: list[bytes], received_at: int) -> int:
        """Hand one book's messages (``key`` ``exchange:symbol``, in order) to the books topic, held like trades;
        returns how many were accepted (0 once :meth:`release` was called while the buffer was full)."""
        if not values or not self._reserve(len(values)):
            return 0
        appended = 0
        try:
            with self._publish_lock:
                self.books = True
                partition = (murmur2(key) & 0x7FFFFFFF) % self._partition_count(self.books_topic)
                tp = TopicPartition(self.books_topic, partition)
                for value in values:
                    self._append_record(tp, key, value, received_at)
                    appended += 1
        finally:
            if appended < len(values):
                self._unreserve(len(values) - appended)
        return appended

    def dead_letter(self, letter: DeadLetter) -> None:
        """Send a refused input (raw payload and reason) to the dead-letter topic (held like a trade)."""
        if not self._reserve(1):
            return
        key = letter.source.encode()
        try:
            with self._publish_lock:
                partition = (murmur2(key) & 0x7FFFFFFF) % self._partition_count(self.dlq_topic)
                self._append_record(TopicPartition(self.dlq_topic, partition), key, letter.encode(), letter.received_at)
        except BaseException:
            self._unreserve(1)
            raise

    def _append_record(self, tp: TopicPartition, key: bytes, value: bytes, received_at: int) -> None:
        """One record to the current producer (caller holds ``_publish_lock``)."""
        appender = self._appender
        if appender is not None:
            appender.append(tp, key, value, received_at)
            return
        batch = OpenBatch(None, tp, [(key, value, received_at)])
        try:
            future = self.producer.send(
                tp.topic, value=value, key=key, partition=tp.partition, timestamp_ms=received_at
            )
        except kafka_errors.KafkaTimeoutError as exc:  # no metadata in time (broker away): re-sent later
            self._on_batch_done(batch, exc)
            return
        batch.future = future
        future.add_both(self._on_record_done, batch)

    def _on_record_done(self, batch: OpenBatch, result: Any) -> None:
        self._on_batch_done(batch, result if isinstance(result, BaseException) else None)

    def _reserve(self, count: int) -> bool:
        """Count ``count`` records as held, waiting while that would exceed the bound; False once released."""
        waited = False
        with self._cond:
            while self._held > 0 and self._held + count > self.buffer_trades:
                if self._released.is_set():
                    self.metrics.trades_not_delivered += count
                    logger.error(
                        "trades not accepted: the buffer is full and ingest is stopping",
                        extra={"trades": count, "held": self._held},
                    )
                    return False
                if not waited:
                    waited = True
                    self.metrics.backpressure_waits += 1
                    self._log("warning", "buffer full: ingest waits for Kafka (back-pressure)", held=self._held)
                self._cond.wait(0.5)
            self._held += count
            metrics = self.metrics
            metrics.buffered = self._held
            if self._held > metrics.buffered_max:
                metrics.buffered_max = self._held
        return True

    def _unreserve(self, count: int) -> None:
        with self._cond:
            self._held -= count
            self.metrics.buffered = self._held
            self._cond.notify_all()

    def release(self) -> None:
        """Shutdown: a publish waiting for room gives up instead of blocking its thread."""
        self._released.set()
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------------------------------------- completion
    def _on_batch_done(self, batch: OpenBatch, error: BaseException | None) -> None:
        """A batch was acknowledged (``error`` None), refused for good, or failed for now (kept to re-send)."""
        metrics = self.metrics
        count = len(batch.records)
        topic = batch.tp.topic
        is_trade = topic != self.dlq_topic and topic != self.books_topic
        if error is not None and not isinstance(error, PERMANENT_ERRORS):
            with self._cond:
                self._retry.append(batch)
            self._wake.set()
            self._log("warning", "Kafka did not acknowledge a batch: it will be re-sent", error=repr(error))
            return
        with self._cond:
            self._held -= count
            metrics.buffered = self._held
            self._cond.notify_all()
        if error is not None:
            metrics.publish_errors += count
            if is_trade:
                self._log("error", "trades not delivered to Kafka", error=repr(error), topic=self.trades_topic)
            elif topic == self.books_topic:
                self._log("error", "book messages not delivered to Kafka", error=repr(error), topic=topic)
            else:
                self._log("error", "dead letter not delivered to Kafka", error=repr(error), topic=self.dlq_topic)
            return
        if not is_trade:
            if topic == self.books_topic:
                metrics.book_messages_published += count
            else:
                metrics.dlq_published += count
            return
        now = time.time()
        metrics.trades_published += count
        metrics.last_acked_at = now
        metrics.observe_latency(max(now - batch.first_received_at / 1000, 0.0))

    def _log(self, level: str, message: str, **extra: Any) -> None:
        # One line per second per message at most: a broker outage fails thousands of records at once.
        now = time.monotonic()
        if now - self._last_error_log.get(message, 0.0) >= 1.0:
            self._last_error_log[message] = now
            getattr(logger, level)(message, extra={**extra, "errors": self.metrics.publish_errors, "held": self._held})

    # ------------------------------------------------------------------------------------------- recovery
    def _keep(self) -> None:
        """The keeper thread: re-sends failed batches through a fresh producer, until closed."""
        while not self._closed.is_set():
            self._wake.wait(KEEPER_INTERVAL)
            self._wake.clear()
            if self._closed.is_set():
                return
            with self._cond:
                due = bool(self._retry)
            if due:
                try:
                    self.recover(force=False)
                except Exception:  # pragma: no cover - keep the keeper alive; the next round tries again
                    logger.exception("re-sending failed batches did not complete")

    def recover(self, force: bool = True) -> int:
        """Replace the producer and re-send every failed batch through the new one; returns records re-sent.

        The old producer is closed forcefully first: its unfinished batches fail and join the re-send list,
        so nothing stays behind in a producer whose idempotent state can no longer be trusted. Records the old
        producer had already written to a socket may still reach the broker: they then appear twice on the
        topic, which consumers absorb (unique (exchange, symbol, trade_id)). Unless ``force``, nothing happens
        when no batch is waiting to be re-sent (another recovery took care of it).
        """
        with self._publish_lock:
            if not force:
                with self._cond:
                    if not self._retry:
                        return 0
            old = self.producer
            api_version = old.config.get("api_version")
            # A known api_version skips the bootstrap probe, so this works while the broker is still away.
            self.producer = KafkaProducer(**client_config(), **{**self.options, "api_version": api_version})
            self._appender = self._make_appender(self.producer)
            if self._appender is not None:
                topics = (self.trades_topic, self.dlq_topic, *((self.books_topic,) if self.books else ()))
                register_topics(self.producer, topics)
            force_close(old)
            with self._cond:
                batches, self._retry = self._retry, []
            resent = 0
            for batch in batches:
                for key, value, received_at in batch.records:
                    self._append_record(batch.tp, key, value, received_at)
                resent += len(batch.records)
                if batch.tp.topic not in (self.dlq_topic, self.books_topic):
                    self.metrics.trades_resent += len(batch.records)
            self.metrics.producer_restarts += 1
        logger.warning("Kafka producer recreated; re-sending what was not acknowledged", extra={"records": resent})
        return resent

    # ------------------------------------------------------------------------------------------- shutdown
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every accepted record is acknowledged (or refused for good); False on timeout.

        Waits on this producer's own count, not on kafka-python's ``flush()`` (which waits for ever on a batch
        it has split); failed batches are re-sent meanwhile by the keeper.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._held > 0:
                remaining = 0.5 if deadline is None else min(deadline - time.monotonic(), 0.5)
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float = 30.0) -> int:
        """Flush (up to ``timeout`` seconds) and close; returns how many records were not delivered (logged)."""
        self.flush(timeout)
        self.release()
        self._closed.set()
        self._wake.set()
        if self._keeper is not threading.current_thread():
            self._keeper.join(timeout=30)
        with self._publish_lock:
            producer = self.producer
            if self._held == 0:
                try:
                    producer.close(timeout=max(timeout, 1.0))
                except kafka_errors.KafkaError as exc:  # pragma: no cover - everything was acknowledged already
                    logger.error("producer close did not complete", extra={"error": repr(exc)})
                    force_close(producer)
            else:
                force_close(producer)
        undelivered = self._held
        if undelivered:
            self.metrics.trades_not_delivered += undelivered
            logger.error(
                "records not delivered to Kafka",
                extra={"records": undelivered, "trades_not_delivered": self.metrics.trades_not_delivered},
            )
        return undelivered
