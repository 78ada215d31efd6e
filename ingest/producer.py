"""The one Kafka producer of an ingest process: trades to ``market.trades``, dead letters to the DLQ, and book
messages to ``market.books`` (:meth:`TradeProducer.publish_books`, only with the books channel).

acks=all with idempotence, batching (linger + large batches) and compression. Records are appended to
kafka-python's batches directly (:class:`BatchAppender`) and counted by one callback per batch.

No accepted record is dropped: every record is held (key, value, receipt time) until the broker acknowledges
its batch. A batch that fails for a reason that may pass (a broker outage: the delivery timeout expires) is
re-sent by a fresh ``KafkaProducer`` (kafka-python's idempotent sequence state is not trustworthy after expired
batches; consumers de-duplicate on (exchange, symbol, trade_id), so a re-sent record is harmless). Only
refusals that can never pass (a record larger than the topic allows) are dropped, counted and logged.

What is held in memory is bounded in bytes (``INGEST_BUFFER_BYTES``, each record counted at its serialised size
plus :data:`RECORD_OVERHEAD`; kafka-python 3 has no ``buffer_memory`` of its own, and its batches, in flight or
failed, are records held here until acknowledged) and in records (``INGEST_BUFFER_TRADES``). When the bound is
reached with a journal (:mod:`ingest.journal`, ``INGEST_JOURNAL_DIR``), records spill to it on disk and, once
Kafka takes records again, the pump thread replays them in order before any newer record, removing a segment only
when Kafka acknowledged all of it. Without a journal, or when the journal is full (``INGEST_JOURNAL_BYTES``),
:meth:`publish` blocks the calling thread (the WebSocket reader: back-pressure) until there is room.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from kafka import KafkaProducer
from kafka import errors as kafka_errors
from kafka.partitioner.default import murmur2
from kafka.structs import TopicPartition

from cryptoproject.kafka import client_config
from cryptoproject.kafka_internals import BatchAppender, OpenBatch, force_close, register_topics
from ingest import journal as journals
from ingest.journal import Journal, JournalRecord
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
#: bytes counted per held record beside its value: key, Kafka framing, the held tuple (see docs/RELIABILITY.md)
RECORD_OVERHEAD = 64
#: the pump's period when idle: spilled records are fsynced at least this often (seconds)
PUMP_INTERVAL = 0.05
#: journal bytes read per replay step at most
REPLAY_CHUNK = 1024 * 1024


def held_bytes(values: Iterable[bytes], count: int) -> int:
    """What ``count`` records with these values count for against ``INGEST_BUFFER_BYTES``."""
    return sum(map(len, values)) + RECORD_OVERHEAD * count


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
        buffer_bytes: int | None = None,
        journal: Journal | None = None,
        **options: Any,
    ) -> None:
        self.metrics = metrics
        self.trades_topic = trades_topic or settings.KAFKA_TRADES_TOPIC
        self.dlq_topic = dlq_topic or settings.KAFKA_DLQ_TOPIC
        self.books_topic = books_topic or settings.KAFKA_BOOKS_TOPIC
        self.books = False  # set by publish_books' first call: the books topic is then registered on recovery
        self.buffer_trades = buffer_trades or settings.INGEST_BUFFER_TRADES
        self.buffer_bytes = buffer_bytes or settings.INGEST_BUFFER_BYTES
        self.journal = journal
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
        self._held_bytes = 0
        self._retry: list[OpenBatch] = []
        # Batches not done for good (open, in flight, failed): their lowest ``seq`` says up to where every record
        # appended is acknowledged (:meth:`acknowledged_below`). ``_seq`` numbers records in append order.
        self._outstanding: set[OpenBatch] = set()
        self._seq = 0
        self._publish_lock = threading.RLock()  # one appender user at a time; the keeper swaps producers under it
        self._released = threading.Event()  # stop waiting for room (shutdown)
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._keeper = threading.Thread(target=self._keep, name="ingest-producer-keeper", daemon=True)
        self._keeper.start()
        # Spilling: while True every record goes to the journal (so none overtakes one in it). ``_route_lock``
        # makes "memory or journal" and the pump's switch back one step each.
        self._route_lock = threading.Lock()
        self._spilling = journal is not None and journal.unread  # a journal left by a crash is replayed first
        self._replayed_segments: list[tuple[int, int]] = []  # (segment, seq every record of it is below)
        self._spill_started = 0.0
        self._pump_wake = threading.Event()
        self._pump_thread: threading.Thread | None = None
        if journal is not None:
            metrics.journal_bytes = journal.bytes
            self._pump_thread = threading.Thread(target=self._pump, name="ingest-journal-pump", daemon=True)
            self._pump_thread.start()

    # ------------------------------------------------------------------------------------------- set-up
    def _make_appender(self, producer: KafkaProducer) -> BatchAppender | None:
        if not self.fast:
            return None
        if BatchAppender.supported(producer):
            return BatchAppender(producer, self._on_batch_done, self._on_batch_open)
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
        if not batch:
            return 0
        values = [trade.encode() for trade in batch]
        nbytes = held_bytes(values, len(values))
        if self.journal is not None:
            spilled = self._spill_or_reserve(
                len(batch),
                nbytes,
                lambda: [(journals.TRADE, t.key, v, t.received_at) for t, v in zip(batch, values, strict=True)],
            )
            if spilled is not None:
                if spilled:
                    self.metrics.trades_accepted += len(batch)
                return len(batch) if spilled else 0
        elif not self._reserve(len(batch), nbytes):
            return 0
        appended = 0
        try:
            with self._publish_lock:
                route, append = self._route, self._append_record
                routes = self._routes
                for trade, value in zip(batch, values, strict=True):
                    key, tp = routes.get((trade.exchange, trade.symbol)) or route(trade)
                    append(tp, key, value, trade.received_at)
                    appended += 1
        finally:
            if appended < len(batch):  # an exception (no metadata for a new symbol): only what was appended is held
                self._unreserve(len(batch) - appended, held_bytes(values[appended:], len(batch) - appended))
            self.metrics.trades_accepted += appended
        return appended

    def publish_books(self, key: bytes, values: list[bytes], received_at: int) -> int:
        """Hand one book's messages (``key`` ``exchange:symbol``, in order) to the books topic, held like trades;
        returns how many were accepted (0 once :meth:`release` was called while the buffer was full).

        Book messages are never spilled to the journal: while Kafka is away they wait for room in the buffer (the
        books connection stalls, and its book resyncs from a new snapshot afterwards), so trades keep the journal.
        """
        nbytes = held_bytes(values, len(values))
        if not values or not self._reserve(len(values), nbytes):
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
                self._unreserve(len(values) - appended, held_bytes(values[appended:], len(values) - appended))
        return appended

    def dead_letter(self, letter: DeadLetter) -> None:
        """Send a refused input (raw payload and reason) to the dead-letter topic (held like a trade)."""
        key, value = letter.source.encode(), letter.encode()
        nbytes = held_bytes((value,), 1)
        if self.journal is not None:
            routed = self._spill_or_reserve(1, nbytes, lambda: [(journals.DEAD_LETTER, key, value, letter.received_at)])
            if routed is not None:  # in the journal, or refused (counted)
                return
        elif not self._reserve(1, nbytes):
            return
        try:
            with self._publish_lock:
                self._append_record(self._tp_for(self.dlq_topic, key), key, value, letter.received_at)
        except BaseException:
            self._unreserve(1, nbytes)
            raise

    def _tp_for(self, topic: str, key: bytes) -> TopicPartition:
        return TopicPartition(topic, (murmur2(key) & 0x7FFFFFFF) % self._partition_count(topic))

    def _append_record(
        self, tp: TopicPartition, key: bytes, value: bytes, received_at: int, seq: int | None = None
    ) -> None:
        """One record to the current producer (caller holds ``_publish_lock``); ``seq`` only for a re-sent one."""
        if seq is None:
            seq = self._seq
            self._seq += 1
        appender = self._appender
        if appender is not None:
            appender.append(tp, key, value, received_at, seq)
            return
        batch = OpenBatch(None, tp, [(key, value, received_at)], seq)
        self._on_batch_open(batch, None)
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

    def _on_batch_open(self, batch: OpenBatch, replaces: OpenBatch | None) -> None:
        with self._cond:
            self._outstanding.add(batch)
            if replaces is not None:  # a split's half: the split batch never completes itself
                self._outstanding.discard(replaces)

    def acknowledged_below(self) -> int:
        """Every record appended with a sequence number below this is done (acknowledged or refused for good)."""
        with self._publish_lock, self._cond:
            return min((b.seq for b in self._outstanding), default=self._seq)

    def _room(self, count: int, nbytes: int) -> bool:
        """Whether ``count`` records of ``nbytes`` fit under both bounds (caller holds ``_cond``); a record larger
        than the bound fits an empty buffer."""
        return self._held == 0 or (
            self._held + count <= self.buffer_trades and self._held_bytes + nbytes <= self.buffer_bytes
        )

    def _add_held(self, count: int, nbytes: int) -> None:
        """Count records as held (caller holds ``_cond``)."""
        self._held += count
        self._held_bytes += nbytes
        metrics = self.metrics
        metrics.buffered = self._held
        metrics.buffered_bytes = self._held_bytes
        if self._held > metrics.buffered_max:
            metrics.buffered_max = self._held
        if self._held_bytes > metrics.buffered_bytes_max:
            metrics.buffered_bytes_max = self._held_bytes

    def _reserve(self, count: int, nbytes: int) -> bool:
        """Count ``count`` records as held, waiting while that would exceed the bound; False once released."""
        waited = False
        with self._cond:
            while not self._room(count, nbytes):
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
            self._add_held(count, nbytes)
        return True

    def _unreserve(self, count: int, nbytes: int) -> None:
        with self._cond:
            self._held -= count
            self._held_bytes -= nbytes
            self.metrics.buffered = self._held
            self.metrics.buffered_bytes = self._held_bytes
            self._cond.notify_all()

    # ------------------------------------------------------------------------------------------- the journal
    def _spill_or_reserve(self, count: int, nbytes: int, records: Callable[[], list[JournalRecord]]) -> bool | None:
        """Route ``count`` records: None when they are reserved in memory (the caller appends them), True when
        they went to the journal, False when not accepted (the journal full and ingest stopping)."""
        journal = self.journal
        assert journal is not None
        full_since: float | None = None
        while True:
            with self._route_lock:
                if not self._spilling:
                    with self._cond:
                        if self._room(count, nbytes):
                            self._add_held(count, nbytes)
                            return None
                    self._spilling = True
                    self._spill_started = time.monotonic()
                    logger.warning(
                        "memory bound reached: spilling to the journal",
                        extra={
                            "held": self._held,
                            "held_bytes": self._held_bytes,
                            "buffer_bytes": self.buffer_bytes,
                            "journal": str(journal.directory),
                        },
                    )
                batch = records()
                if journal.append(batch):
                    metrics = self.metrics
                    metrics.journal_spilled += len(batch)
                    metrics.journal_bytes = journal.bytes
                    if metrics.journal_bytes > metrics.journal_bytes_max:
                        metrics.journal_bytes_max = metrics.journal_bytes
                    if full_since is not None:
                        logger.warning(
                            "journal has room again: reading resumes",
                            extra={"waited_s": round(time.monotonic() - full_since, 3)},
                        )
                    return True
            if full_since is None:
                full_since = time.monotonic()
                self.metrics.journal_full_waits += 1
                logger.error(
                    "journal full: ingest waits for Kafka (back-pressure); REST backfill recovers what is missed",
                    extra={"journal_bytes": journal.bytes, "journal_max_bytes": journal.max_bytes},
                )
            if self._released.is_set():
                self.metrics.trades_not_delivered += count
                logger.error(
                    "records not accepted: the journal is full and ingest is stopping", extra={"records": count}
                )
                return False
            self._released.wait(0.5)  # the pump frees room as Kafka acknowledges its replay; shutdown ends it

    def _pump(self) -> None:
        """The pump thread: fsyncs spilled records, replays them when Kafka takes records, removes what is acked."""
        while not self._closed.is_set():
            try:
                moved = self.pump_once()
            except Exception:  # pragma: no cover - keep the pump alive; the next round tries again
                logger.exception("journal pump step failed")
                moved = 0
            if not moved:
                self._pump_wake.wait(PUMP_INTERVAL)
                self._pump_wake.clear()

    def pump_once(self) -> int:
        """One step of the pump; returns the records replayed (0: nothing to do now)."""
        journal = self.journal
        assert journal is not None
        journal.sync()
        self._remove_acknowledged()
        if not self._spilling:
            return 0
        with self._cond:
            # Replay only while Kafka takes records: no failed batch waiting, and the buffer half empty.
            if self._retry or self._held_bytes * 2 > self.buffer_bytes or self._held * 2 > self.buffer_trades:
                return 0
            room_bytes = self.buffer_bytes - self._held_bytes
            room_records = self.buffer_trades - self._held
        limit = min(REPLAY_CHUNK, room_bytes // 2)
        replayed = self._replay(journal.read(limit, max(room_records // 2, 1)))
        if not journal.unread:
            with self._route_lock:  # publishers wait: what they write now must follow the journal's tail
                journal.sync()
                replayed += self._replay(journal.read(limit, max(room_records // 2, 1)))
                if not journal.unread:
                    journal.rotate()
                    self._spilling = False
                    logger.info(
                        "journal replay done",
                        extra={
                            "spilled_s": round(time.monotonic() - self._spill_started, 3),
                            "replayed": self.metrics.journal_replayed,
                            "journal_bytes": journal.bytes,
                        },
                    )
        with self._publish_lock:
            barrier = self._seq
        self._replayed_segments.extend((number, barrier) for number in journal.take_finished())
        self.metrics.journal_bytes = journal.bytes
        return replayed

    def _replay(self, records: list[JournalRecord]) -> int:
        """Append journal records to Kafka's batches (room was checked by the caller)."""
        if not records:
            return 0
        with self._cond:
            self._add_held(len(records), held_bytes((r[2] for r in records), len(records)))
        with self._publish_lock:
            for kind, key, value, received_at in records:
                topic = self.trades_topic if kind == journals.TRADE else self.dlq_topic
                self._append_record(self._tp_for(topic, key), key, value, received_at)
        self.metrics.journal_replayed += len(records)
        return len(records)

    def _remove_acknowledged(self) -> None:
        """Delete the replayed segments whose every record Kafka acknowledged."""
        journal = self.journal
        if journal is None or not self._replayed_segments:
            return
        below = self.acknowledged_below()
        done = [number for number, barrier in self._replayed_segments if barrier <= below]
        if done:
            journal.remove(done)
            self._replayed_segments = [(n, b) for n, b in self._replayed_segments if n not in done]
            self.metrics.journal_bytes = journal.bytes

    def replay_journal(self, timeout: float | None = None) -> bool:
        """Block until a journal left by an earlier process is replayed and acknowledged (start-up, before the
        resume point is read); False on timeout."""
        if self.journal is None:
            return True
        if self._spilling:
            logger.warning(
                "journal left by an earlier process: replaying it first",
                extra={"journal_bytes": self.journal.bytes, "segments": self.journal.leftover_segments},
            )
        return self._drain_journal(None if timeout is None else time.monotonic() + timeout)

    def _drain_journal(self, deadline: float | None) -> bool:
        """Wait until the journal is replayed and every replayed segment removed; False at ``deadline``."""
        while self.journal is not None and (self._spilling or self._replayed_segments):
            if deadline is not None and time.monotonic() > deadline:
                return False
            self._pump_wake.set()
            time.sleep(0.05)  # the pump thread does the work; this only waits for it
        return True

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
        nbytes = held_bytes((r[1] for r in batch.records), count)
        with self._cond:
            self._outstanding.discard(batch)
            self._held -= count
            self._held_bytes -= nbytes
            metrics.buffered = self._held
            metrics.buffered_bytes = self._held_bytes
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
                    self._append_record(batch.tp, key, value, received_at, batch.seq)
                with self._cond:  # its records are in new batches now (which keep its seq)
                    self._outstanding.discard(batch)
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
        """Flush (up to ``timeout`` seconds) and close; returns how many records were not delivered (logged).

        The journal is replayed first while Kafka answers (within ``timeout``); what it still holds then stays on
        disk for the next start."""
        deadline = time.monotonic() + timeout
        self._drain_journal(deadline)
        self.flush(max(deadline - time.monotonic(), 0.0))
        self.release()
        self._closed.set()
        self._wake.set()
        self._pump_wake.set()
        if self._keeper is not threading.current_thread():
            self._keeper.join(timeout=30)
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=30)
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
        if self.journal is not None:
            self._remove_acknowledged()
            self.journal.close()
            if self.journal.bytes:
                logger.warning(
                    "records left in the journal: replayed at the next start",
                    extra={"journal_bytes": self.journal.bytes, "journal": str(self.journal.directory)},
                )
        undelivered = self._held
        if undelivered:
            self.metrics.trades_not_delivered += undelivered
            logger.error(
                "records not delivered to Kafka",
                extra={"records": undelivered, "trades_not_delivered": self.metrics.trades_not_delivered},
            )
        return undelivered
