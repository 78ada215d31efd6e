"""``consume_books``: the ``market.books`` consumer group that keeps one :class:`L2Book` per market and stores the
books' 1 s metrics and top-N snapshots (docs/BOOKS.md, "Storage").

One loop, one thread, in the shape of ``consume_trades`` (:mod:`analytics.consumer`): poll -> decode and apply each
message (:mod:`books.keeper`; a malformed one becomes a dead letter with its reason) -> when ``batch_size`` messages
or ``batch_ms`` -> store the batch's rows and replay checkpoints in one transaction (:mod:`books.storage`) -> send the
dead letters and wait for their acknowledgement -> commit the next offsets -> ``on_books`` with the markets whose
book changed. A store or dead-letter failure pauses the partitions and retries the same batch with backoff; nothing
is committed before it is durable.

**The restart.** A book is state the committed offset does not hold. Each stored batch records, per partition, the
offset of the oldest valid snapshot message its held books were built from (:class:`books.storage.Checkpoint`, in
the batch's transaction). On every assignment the member seeks each partition back to the checkpoint at or before
its committed offset (the beginning of the partition when there is none) and re-reads from there: the messages
below the committed offset rebuild the books and rewrite only what is already stored (the upserts never take a row
back), their dead letters are not sent again, and no offset below the committed one is committed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from analytics.consumer.config import ConsumerConfig
from analytics.consumer.dead_letters import DeadLetterSender, Letter, LetterId, dlq_producer, letter_for
from analytics.consumer.errors import REBALANCE_ERRORS, TRANSIENT_ERRORS
from books import storage
from books.book import L2Book
from books.keeper import BookKeeper, Output, decode
from books.live import BookPusher
from cryptoproject.kafka import client_config
from cryptoproject.kafka_offsets import METRICS_TTL_SECONDS
from cryptoproject.redis_clients import redis_client

logger = logging.getLogger(__name__)

#: the live-push hook: (exchange, symbol, book, valid) of every market whose book changed in a batch
OnBooks = Callable[[list[tuple[str, str, L2Book, bool]]], None]
#: the Redis key prefix of the members' metrics snapshots (the health page reads them)
METRICS_PREFIX = "metrics:books:"


@dataclass(frozen=True)
class BooksConsumerConfig:
    """Tuning of one :class:`BooksConsumer`."""

    batch_size: int = 2000
    batch_ms: int = 500
    max_records: int | None = None
    idle_exit_s: float | None = None
    max_poll_records: int = 1000
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    metrics_interval_s: float = 5.0
    store_every_s: int = 10
    depth: int = 50
    dlq_raw_max_bytes: int = 65536

    @classmethod
    def from_settings(cls, **overrides: Any) -> BooksConsumerConfig:
        """``BOOK_STORE_EVERY_S``, ``BOOK_DEPTH_LEVELS`` and ``DLQ_RAW_MAX_BYTES``, then ``overrides``."""
        values: dict[str, Any] = {
            "store_every_s": settings.BOOK_STORE_EVERY_S,
            "depth": settings.BOOK_DEPTH_LEVELS,
            "dlq_raw_max_bytes": settings.DLQ_RAW_MAX_BYTES,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class BooksConsumerMetrics:
    """Counters since start (the log line and the ``metrics:books:<member>`` Redis key)."""

    consumed: int = 0
    replayed: int = 0
    applied: int = 0
    breaks: int = 0
    invalid_snapshots: int = 0
    incomplete_snapshots: int = 0
    dead_lettered: int = 0
    batches: int = 0
    failures: int = 0
    metric_rows: int = 0
    snapshot_rows: int = 0
    markets: int = 0
    valid_markets: int = 0
    started: float = field(default_factory=time.time)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready dict of every figure."""
        figures = {k: v for k, v in vars(self).items() if k != "started"}
        return {**figures, "uptime_s": round(time.time() - self.started, 1), "updated_at": int(time.time() * 1000)}


@dataclass
class _Batch:
    """Messages read since the last delivery: the next offset per partition, and the dead letters."""

    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    letters: list[Letter] = field(default_factory=list)
    acked: set[LetterId] = field(default_factory=set)
    oversized: set[LetterId] = field(default_factory=set)
    consumed: int = 0
    started: float = 0.0
    output: list[Output] | None = None  # taken from the keepers once the batch is due (kept for a retry)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: BooksConsumer) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._owner.reassigned = True

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner.reassigned = True


class BooksConsumer:
    """Consume ``KAFKA_BOOKS_TOPIC`` in group ``KAFKA_BOOKS_CONSUMER_GROUP``; ``run()`` returns after :meth:`stop`,
    ``max_records`` or ``idle_exit_s`` without messages, the current batch delivered first."""

    def __init__(
        self,
        config: BooksConsumerConfig | None = None,
        on_books: OnBooks | None = None,
        consumer: KafkaConsumer | None = None,
        producer: KafkaProducer | None = None,
        pusher: BookPusher | None = None,
    ) -> None:
        self.config = config = config or BooksConsumerConfig.from_settings()
        # The live push to the market pages: fed the changed books after each stored batch (unless another hook
        # is given), and flushed on every pass of the loop so a throttled market's last state goes out.
        self.pusher = pusher
        self.on_books = on_books if on_books is not None or pusher is None else pusher
        self.topic: str = settings.KAFKA_BOOKS_TOPIC
        self.group: str = settings.KAFKA_BOOKS_CONSUMER_GROUP
        self.source = f"consumer:{self.group}"
        member = f"{socket.gethostname()}-{os.getpid()}"
        self.metrics_key = f"{METRICS_PREFIX}{member}"
        self.metrics = BooksConsumerMetrics()
        self.keepers: dict[int, BookKeeper] = {}
        #: per partition, the committed offset found at assignment: messages below it are a replay
        self.floor: dict[int, int] = {}
        self.reassigned = False
        self._assigned_once = False
        self._stop = threading.Event()
        self._batch = _Batch()
        self._retry_at = 0.0
        self._backoff = config.backoff_initial_s
        self._last_record_at = time.monotonic()
        self._last_metrics = 0.0
        self._redis: redis.Redis | None = None
        self._consumer = consumer or KafkaConsumer(
            **client_config(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=config.max_poll_records,
            # As consume_trades: also the group's rebalance timeout; the loop polls at least every 0.5 s.
            max_poll_interval_ms=30_000,
            session_timeout_ms=10_000,
            client_id=f"consume_books-{member}",
        )
        self._producer = producer or dlq_producer(ConsumerConfig())
        self.dead_letters = DeadLetterSender(self._producer, settings.KAFKA_DLQ_TOPIC, 10.0)

    def stop(self) -> None:
        """Finish the current batch, commit and return (safe from signal handlers)."""
        self._stop.set()

    def run(self) -> None:
        """Consume until stopped or a limit is reached."""
        self._consumer.subscribe([self.topic], listener=_Rebalance(self))
        self._consumer.partitions_for_topic(self.topic)
        logger.info("books consumer started", extra={"topic": self.topic, "group": self.group})
        try:
            while not self._stop.is_set():
                self._step()
                self._periodic()
            deadline = time.monotonic() + 10
            while self._batch.consumed and time.monotonic() < deadline and not self._deliver():
                time.sleep(min(self._backoff, 1.0))
            self.publish_metrics()
        finally:
            self.close()

    def close(self) -> None:
        """Flush the dead-letter producer, leave the group without committing."""
        try:
            self._producer.flush(timeout=10)
            self._producer.close(timeout=10)
        finally:
            self._consumer.close(autocommit=False)
            logger.info("books consumer stopped", extra=self.metrics.snapshot())

    # ------------------------------------------------------------------------------------------------ the loop
    def _step(self) -> None:
        now = time.monotonic()
        if self._batch.output is not None:  # a failed delivery waits for its retry; poll keeps the membership
            self._consumer.poll(timeout_ms=int(max(0.0, min(self._retry_at - now, 0.5)) * 1000))
            if self.reassigned:
                self._reassign()
            elif time.monotonic() >= self._retry_at:
                self._deliver()
            return
        batch = self._batch
        timeout = max(0, int((batch.started + self.config.batch_ms / 1000 - now) * 1000)) if batch.consumed else 500
        wait = self.pusher.wait_s() if self.pusher is not None else None
        if wait is not None:
            timeout = min(timeout, int(wait * 1000))  # a held book's slot frees before the poll would return
        room = max(1, self.config.batch_size - batch.consumed)
        polled = self._consumer.poll(timeout_ms=timeout, max_records=room)
        if self.reassigned:
            self._reassign()  # what this poll returned is read again from the replay points
            return
        for tp, messages in polled.items():
            self._apply(tp, messages)
        if polled:
            self._last_record_at = time.monotonic()
        batch = self._batch
        due = (
            batch.consumed >= self.config.batch_size or time.monotonic() >= batch.started + self.config.batch_ms / 1000
        )
        if batch.consumed and due:
            self._deliver()
        elif not batch.consumed and self._limits_reached():
            self._stop.set()

    def _apply(self, tp: TopicPartition, messages: list[Any]) -> None:
        batch = self._batch
        if not batch.consumed:
            batch.started = time.monotonic()
        keeper = self.keepers.get(tp.partition)
        if keeper is None:
            keeper = self.keepers[tp.partition] = BookKeeper(self.config.store_every_s, self.config.depth)
        floor = self.floor.get(tp.partition, 0)
        for message in messages:
            replay = message.offset < floor
            try:
                decoded = decode(message.value)
            except Exception as exc:  # noqa: BLE001 - whatever a bad message raises, it is a dead letter
                if not replay:
                    reason = f"{type(exc).__name__}: {exc}"[:500]
                    letter = letter_for(message, reason, self.source, self.config.dlq_raw_max_bytes)
                    batch.letters.append((message.key, letter))
                    logger.warning("book message refused", extra={"reason": reason, "offset": message.offset})
            else:
                keeper.apply(message.offset, decoded)
            batch.consumed += 1
            if replay:
                self.metrics.replayed += 1
            else:
                self.metrics.consumed += 1
        batch.offsets[tp] = messages[-1].offset + 1

    def _limits_reached(self) -> bool:
        if self.config.max_records is not None and self.metrics.consumed >= self.config.max_records:
            return True
        # Idle counts only once partitions were assigned: a restarted member may wait for the group to drop its
        # killed predecessor (the session timeout) before it gets any.
        idle = self.config.idle_exit_s
        return idle is not None and self._assigned_once and time.monotonic() - self._last_record_at >= idle

    # ------------------------------------------------------------------------------------------------ delivery
    def _deliver(self) -> bool:
        """Store, dead-letter and commit the batch; False (partitions paused, retry scheduled) on a failure."""
        batch = self._batch
        if batch.output is None:
            batch.output = [self.keepers[tp.partition].take() for tp in batch.offsets]
        metric_rows = [row for out in batch.output for row in out.metrics.values()]
        snapshot_rows = [row for out in batch.output for row in out.snapshots.values()]
        checkpoints = [
            storage.Checkpoint(tp.partition, through, self.keepers[tp.partition].replay_from(through))
            for tp, through in batch.offsets.items()
        ]
        try:
            counts = storage.store(metric_rows, snapshot_rows, checkpoints, self.group, self.topic)
            self.dead_letters.send(batch.letters, batch.acked, batch.oversized)
            # A commit the broker does not answer (Kafka down) is a transient failure too: the batch is retried
            # (stored again, a no-op) and committed once Kafka is back, rather than the process exiting.
            self._commit({tp: o for tp, o in batch.offsets.items() if o > self.floor.get(tp.partition, 0)})
        except TRANSIENT_ERRORS as exc:
            self._failed(exc)
            return False
        if self._retry_at:
            self._retry_at, self._backoff = 0.0, self.config.backoff_initial_s
            self._consumer.resume(*self._consumer.assignment())
        self._account(batch, counts)
        self._batch = _Batch()
        self._push(batch.output)
        if self._limits_reached():
            self._stop.set()
        return True

    def _account(self, batch: _Batch, counts: storage.StoreCounts) -> None:
        m = self.metrics
        m.batches += 1
        m.dead_lettered += len(batch.letters)
        m.metric_rows += counts.metrics
        m.snapshot_rows += counts.snapshots
        for out in batch.output or []:
            m.applied += out.applied
            m.breaks += out.breaks
            m.invalid_snapshots += out.invalid_snapshots
            m.incomplete_snapshots += out.incomplete_snapshots
        markets = [market for keeper in self.keepers.values() for market in keeper.markets.values()]
        m.markets, m.valid_markets = len(markets), sum(market.book is not None for market in markets)

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            self._consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except REBALANCE_ERRORS as exc:
            # Durable already: the next batch commits newer offsets, or the next owner replays (idempotent).
            logger.info("book offsets not committed during a rebalance", extra={"error": type(exc).__name__})

    def _push(self, outputs: list[Output]) -> None:
        if self.on_books is None:
            return
        changed = [
            (m.exchange, m.symbol, m.book if m.book is not None else L2Book(), m.book is not None)
            for out in outputs
            for m in out.changed.values()
        ]
        if not changed:
            return
        try:
            self.on_books(changed)
        except Exception:  # a live push must never stop storage
            logger.exception("on_books failed")

    def _failed(self, exc: BaseException) -> None:
        self.metrics.failures += 1
        with contextlib.suppress(OperationalError, InterfaceError):
            connection.close()  # a broken connection stays broken inside Django until closed
        if not self._retry_at:
            self._consumer.pause(*self._consumer.assignment())
        self._retry_at = time.monotonic() + self._backoff
        logger.warning(
            "book batch delivery failed, partitions paused, retrying",
            extra={"error": f"{type(exc).__name__}: {exc}"[:300], "backoff_s": self._backoff},
        )
        self._backoff = min(self._backoff * 2, self.config.backoff_max_s)

    # ------------------------------------------------------------------------------------------------ rebalance
    def _reassign(self) -> None:
        """After a rebalance: forget the books and the unstored batch, seek every partition to its replay point."""
        self.reassigned = False
        self._last_record_at = time.monotonic()  # --idle-exit counts from the assignment, not from a long rejoin
        self._batch, self.keepers, self.floor = _Batch(), {}, {}
        self._retry_at, self._backoff = 0.0, self.config.backoff_initial_s
        assigned = set(self._consumer.assignment())
        self._assigned_once = self._assigned_once or bool(assigned)
        self._consumer.resume(*assigned)
        for tp in sorted(assigned, key=lambda p: p.partition):
            committed = self._consumer.committed(tp)
            start = None
            if committed is not None:
                self.floor[tp.partition] = committed
                start = storage.replay_from(self.group, self.topic, tp.partition, committed)
            if start is None:
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, min(start, committed or start))
            logger.info(
                "books partition assigned",
                extra={"partition": tp.partition, "committed": committed, "replay_from": start},
            )

    # ------------------------------------------------------------------------------------------------ metrics
    def _periodic(self) -> None:
        if self.pusher is not None:
            try:
                self.pusher.flush()
            except Exception:  # a live push must never stop storage
                logger.exception("book push flush failed")
        now = time.monotonic()
        if now - self._last_metrics >= self.config.metrics_interval_s:
            self._last_metrics = now
            self.publish_metrics()

    def publish_metrics(self) -> None:
        """Log the metrics and write them to Redis (a Redis failure is logged, never raised)."""
        snapshot = self.metrics.snapshot()
        logger.info("books consumer metrics", extra={"metrics": snapshot})
        try:
            if self._redis is None:
                self._redis = redis_client()
            self._redis.set(self.metrics_key, orjson.dumps(snapshot), ex=METRICS_TTL_SECONDS)
        except redis.RedisError:
            logger.warning("books consumer metrics not written to Redis", exc_info=True)
