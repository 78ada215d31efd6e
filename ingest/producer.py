"""The one Kafka producer of an ingest process: trades to ``market.trades``, dead letters to the DLQ.

acks=all with idempotence, batching (linger + large batches) and compression. Trades are appended to
kafka-python's batches directly (:class:`BatchAppender`) and counted by one callback per batch (acks, publish
latency of the batch's oldest trade, or errors, which are logged). ``close()`` flushes everything accepted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.errors import UnknownError as KafkaUnknownError
from kafka.partitioner.default import murmur2
from kafka.structs import TopicPartition

from cryptoproject.kafka import client_config
from ingest.metrics import IngestMetrics
from ingest.records import DeadLetter, TradeRecord

logger = logging.getLogger(__name__)

LATENCY_SAMPLE = 16  # send() path: one trade in 16 is timed from receipt to ack
_NO_HEADERS: tuple[()] = ()
#: a batch refused as too large is halved until it fits: 256 KiB down to one record takes at most ~10 splits
MAX_SPLITS = 12
PRODUCER_OPTIONS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 20,
    "batch_size": 256 * 1024,
    # zstd: ~3x cheaper in CPU than gzip for these JSON batches, similar ratio (zstandard is a base dependency)
    "compression_type": "zstd",
    "retries": 2**31 - 1,
    "max_in_flight_requests_per_connection": 5,
    "delivery_timeout_ms": 120_000,
}


class _OpenBatch:
    """A kafka-python batch this producer appends to directly: how many trades it holds, the oldest one's time."""

    __slots__ = ("count", "first_received_at", "future")

    def __init__(self, future: Any, first_received_at: int) -> None:
        self.future = future  # the batch's FutureProduceResult: one callback per batch, not per record
        self.count = 1
        self.first_received_at = first_received_at


class BatchAppender:
    """Appends trade records straight into kafka-python's record accumulator, with one callback per batch.

    ``KafkaProducer.send()`` costs ~20 µs of Python per record (argument checks, size estimates, a debug log
    line that formats the producer, one future and two callbacks per record); on one core that alone caps a
    process near 40k records/s. This appends each record to the open batch of its partition under the
    accumulator's own partition lock, which is what ``send()`` does in the end, and counts acknowledgements per
    batch. Batches, sequence numbers (idempotence), linger, compression, retries and ``flush()`` stay
    kafka-python's.

    It relies on internals of the pinned kafka-python (``_accumulator``, ``_sender``): :meth:`supported` checks
    them, and :class:`TradeProducer` falls back to ``send()`` when they are missing. A batch the broker refuses
    as too large is split by kafka-python; the split is wrapped so the halves are counted in its place.
    """

    def __init__(
        self,
        producer: KafkaProducer,
        on_done: Any,
    ) -> None:
        self._accumulator = producer._accumulator
        self._sender = producer._sender
        self._batches = self._accumulator._batches
        self._locks: dict[TopicPartition, Any] = {}
        self._open: dict[TopicPartition, _OpenBatch] = {}
        self._tracked: dict[Any, _OpenBatch] = {}  # produce future -> batch, until it completes
        self._on_done = on_done
        self._split = self._accumulator.split_and_reenqueue
        self._accumulator.split_and_reenqueue = self._split_and_reenqueue

    @staticmethod
    def supported(producer: KafkaProducer) -> bool:
        """True when ``producer`` has the internals this appender uses (the pinned kafka-python does)."""
        accumulator = getattr(producer, "_accumulator", None)
        return (
            accumulator is not None
            and hasattr(producer, "_sender")
            and hasattr(accumulator, "_batches")
            and hasattr(accumulator, "_tp_lock")
            and hasattr(accumulator, "append")
            and hasattr(accumulator, "split_and_reenqueue")
        )

    def append(self, tp: TopicPartition, key: bytes, value: bytes, received_at: int) -> None:
        """Add one record (timestamped with its receipt time) to ``tp``'s open batch, or start a new batch."""
        lock = self._locks.get(tp)
        if lock is None:
            lock = self._locks[tp] = self._accumulator._tp_lock(tp)
        batch = self._open.get(tp)
        if batch is not None:
            with lock:
                queue = self._batches[tp]
                # The sender closes a batch under this lock when it drains it; a closed or full batch refuses.
                if (
                    queue
                    and queue[-1].produce_future is batch.future
                    and queue[-1].records.append(received_at, key, value, _NO_HEADERS) is not None
                ):
                    batch.count += 1
                    return
        record_future, _full, new_batch, _abort = self._accumulator.append(tp, received_at, key, value, [])
        produce_future = record_future._produce_future
        if new_batch:
            batch = self._open[tp] = self._tracked[produce_future] = _OpenBatch(produce_future, received_at)
            produce_future.add_both(self._done, batch)
            self._sender.wakeup()
        else:  # pragma: no cover - the open batch is one we do not track (a split's half, or another sender's)
            record_future.add_both(self._done, _OpenBatch(produce_future, received_at))

    def _split_and_reenqueue(self, batch: Any, now: float | None = None) -> int:
        """kafka-python's split of an oversized batch; the new batches take over its count (all ours)."""
        created: int = self._split(batch, now)
        tracked = self._tracked.pop(batch.produce_future, None)
        if tracked is not None:
            tp = batch.topic_partition
            with self._locks[tp]:
                halves = list(self._batches[tp])[:created]  # the split batches are put at the front
            for half in halves:
                replacement = self._tracked[half.produce_future] = _OpenBatch(
                    half.produce_future, tracked.first_received_at
                )
                replacement.count = half.record_count
                half.produce_future.add_both(self._done, replacement)
        return created

    def _done(self, batch: _OpenBatch, result: Any) -> None:
        self._tracked.pop(batch.future, None)
        if isinstance(result, BaseException):  # pragma: no cover - kafka-python completes batches with success()
            self._on_done(batch, result)
            return
        if isinstance(result, tuple):  # a batch: (base_offset, timestamp, record_exceptions_fn or None)
            record_exceptions = result[2]
            self._on_done(batch, record_exceptions(0) if record_exceptions is not None else None)
        else:  # pragma: no cover - a record future resolves to RecordMetadata
            self._on_done(batch, None)


class TradeProducer:
    """Publishes records; keyed ``<exchange>:<symbol>`` so each symbol stays ordered in one partition.

    The partition of each key is computed once with Kafka's own murmur2 rule (the same as Java clients),
    instead of hashing every message. Trades go through :class:`BatchAppender` (``fast=True``, the default) or
    through ``KafkaProducer.send()`` with a callback per record.
    """

    def __init__(
        self,
        metrics: IngestMetrics,
        producer: KafkaProducer | None = None,
        trades_topic: str | None = None,
        dlq_topic: str | None = None,
        fast: bool = True,
        **options: Any,
    ) -> None:
        self.metrics = metrics
        self.trades_topic = trades_topic or settings.KAFKA_TRADES_TOPIC
        self.dlq_topic = dlq_topic or settings.KAFKA_DLQ_TOPIC
        self.producer = producer or KafkaProducer(**client_config(), **{**PRODUCER_OPTIONS, **options})
        self._routes: dict[tuple[str, str], tuple[bytes, int, TopicPartition]] = {}
        self._partition_count: int | None = None
        self._sample = LATENCY_SAMPLE - 1  # the first trade is timed
        self._last_error_log: dict[str, float] = {}
        self._appender: BatchAppender | None = None
        if fast:
            if BatchAppender.supported(self.producer):
                self._appender = BatchAppender(self.producer, self._on_batch_done)
            else:  # pragma: no cover - another kafka-python than the pinned one
                logger.warning("kafka-python internals changed: publishing with send(), one future per record")

    def _route(self, trade: TradeRecord) -> tuple[bytes, int, TopicPartition]:
        """The key and partition of ``trade``'s symbol, computed once per symbol."""
        route = self._routes.get((trade.exchange, trade.symbol))
        if route is None:
            if self._partition_count is None:
                self._partition_count = len(self.producer.partitions_for(self.trades_topic))
            key = trade.key
            partition = (murmur2(key) & 0x7FFFFFFF) % self._partition_count
            route = (key, partition, TopicPartition(self.trades_topic, partition))
            self._routes[(trade.exchange, trade.symbol)] = route
        return route

    def publish(self, trades: Iterable[TradeRecord]) -> int:
        """Hand trades to the producer (asynchronous); returns how many were accepted."""
        appender = self._appender
        if appender is None:
            return self._send(trades)
        append, routes = appender.append, self._routes
        count = 0
        for trade in trades:
            route = routes.get((trade.exchange, trade.symbol)) or self._route(trade)
            append(route[2], route[0], trade.encode(), trade.received_at)
            count += 1
        self.metrics.trades_accepted += count
        return count

    def _send(self, trades: Iterable[TradeRecord]) -> int:
        """``publish`` through ``send()``: one future per record; one in ``LATENCY_SAMPLE`` is timed to its ack."""
        send, topic, routes = self.producer.send, self.trades_topic, self._routes
        on_ack, on_ack_timed, on_error = self._on_ack, self._on_ack_timed, self._on_error
        count = 0
        sample = self._sample
        for trade in trades:
            route = routes.get((trade.exchange, trade.symbol)) or self._route(trade)
            future = send(topic, value=trade.encode(), key=route[0], partition=route[1])
            sample += 1
            if sample >= LATENCY_SAMPLE:
                sample = 0
                future.add_callback(on_ack_timed, trade.received_at)
            else:
                future.add_callback(on_ack)
            future.add_errback(on_error)
            count += 1
        self._sample = sample
        self.metrics.trades_accepted += count
        return count

    def _on_batch_done(self, batch: _OpenBatch, error: BaseException | None) -> None:
        """A batch was acknowledged (``error`` None) or failed: count its trades, time its oldest one."""
        metrics = self.metrics
        if error is not None:
            metrics.publish_errors += batch.count
            self._log_error("trades not delivered to Kafka", error, self.trades_topic)
            return
        now = time.time()
        metrics.trades_published += batch.count
        metrics.last_acked_at = now
        metrics.observe_latency(max(now - batch.first_received_at / 1000, 0.0))

    def dead_letter(self, letter: DeadLetter) -> None:
        """Send a refused input (raw payload and reason) to the dead-letter topic."""
        future = self.producer.send(self.dlq_topic, value=letter.encode(), key=letter.source.encode())
        future.add_callback(self._on_dlq_ack)
        future.add_errback(self._on_dlq_error, letter)

    def _on_ack(self, _metadata: Any) -> None:
        metrics = self.metrics
        metrics.trades_published += 1
        metrics.last_acked_at = time.time()

    def _on_ack_timed(self, received_at: int, _metadata: Any) -> None:
        metrics = self.metrics
        now = time.time()
        metrics.trades_published += 1
        metrics.last_acked_at = now
        metrics.observe_latency(max(now - received_at / 1000, 0.0))

    def _on_error(self, exc: BaseException) -> None:
        self.metrics.publish_errors += 1
        self._log_error("trade not delivered to Kafka", exc, self.trades_topic)

    def _on_dlq_ack(self, _metadata: Any) -> None:
        self.metrics.dlq_published += 1

    def _on_dlq_error(self, letter: DeadLetter, exc: BaseException) -> None:
        self.metrics.publish_errors += 1
        self._log_error("dead letter not delivered to Kafka", exc, self.dlq_topic, letter.source)

    def _log_error(self, message: str, exc: BaseException, topic: str, source: str | None = None) -> None:
        # One line per second per message at most: a broker outage fails thousands of records at once.
        now = time.monotonic()
        if now - self._last_error_log.get(message, 0.0) >= 1.0:
            self._last_error_log[message] = now
            logger.error(
                message,
                extra={"topic": topic, "source": source, "error": repr(exc), "errors": self.metrics.publish_errors},
            )

    def flush(self, timeout: float | None = None) -> None:
        """Block until every accepted record is acknowledged (or failed; failures are counted by callbacks)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _attempt in range(MAX_SPLITS + 1):
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                self.producer.flush(timeout=remaining)
                return
            except KafkaUnknownError:
                # kafka-python 3.0.12 waits on a batch it has split (the broker refused it as too large) and
                # never completes; its halves are new batches, which the next flush waits for.
                continue
            except KafkaError as exc:
                logger.error(
                    "flush did not complete", extra={"error": repr(exc), "errors": self.metrics.publish_errors}
                )
                return
        logger.error("flush did not complete: batches kept splitting", extra={"errors": self.metrics.publish_errors})

    def close(self, timeout: float = 30.0) -> None:
        """Flush and close."""
        self.flush(timeout)
        try:
            self.producer.close(timeout=timeout)
        except KafkaError as exc:  # pragma: no cover - flush above already waited for everything
            logger.error("producer close did not complete", extra={"error": repr(exc)})
