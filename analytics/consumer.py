"""The ``market.trades`` consumer-group worker behind ``manage.py consume_trades``.

One loop, one thread: poll -> decode and validate -> batch (``batch_size`` records or ``batch_ms``) -> deliver the
batch -> commit the next offset of every partition in it. Delivering a batch means, in this order:

1. store the valid trades in one PostgreSQL transaction (:func:`analytics.storage.store_trades`);
2. push the live trade tape (best effort: the trades are durable now, the steps below only decide whether a
   restart re-reads the batch);
3. queue the Celery tasks per symbol window (:func:`analytics.dispatch.dispatch_batch`);
4. send the refused records to the dead-letter topic and wait for the broker's acknowledgement.

Offsets are committed only once the store, the dispatch and the dead letters succeeded, so a crash at any point
re-reads the batch: the unique key makes the re-stored rows no-ops and the windows are dispatched again
(idempotent tasks).

A rebalance never blocks: the in-flight records of partitions this member loses are dropped uncommitted (their new
owner re-reads them from the last commit), those of partitions it keeps stay in the batch.

Failures of PostgreSQL, the Celery broker or Kafka while delivering (the dead-letter topic included) are
infrastructure failures: nothing is committed, the assigned partitions are paused (``poll`` keeps the group
membership alive without buffering more records) and the same batch is retried with exponential backoff until it
goes through. Bad records are data failures: whatever decoding raises, the record goes to the dead-letter topic
with its reason (a bounded prefix of the raw record and its full length) and the worker goes on, unless the
invalid-message limit of :mod:`analytics.dlq` is exceeded on a partition, which means a bug (a schema change, a
wrong topic) and stops the worker without committing.

A :class:`analytics.watchdog.Watchdog` stops the worker (non-zero exit, for the supervisor to restart it) when the
member sits without partitions, or without commit progress while records wait, for longer than its bound; its
figures go into the metrics snapshot that ``/healthz`` reads. Every blocking call of the loop has a timeout below
the poll interval.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata
from kombu.exceptions import OperationalError as BrokerOperationalError

from analytics.consumer_metrics import ConsumerMetrics, group_offsets, partition_lag
from analytics.dlq import (
    DeadLetterDeliveryError,
    DeadLetterSender,
    DlqLimit,
    InvalidMessageLimiter,
    InvalidMessageLimitError,
    bounded_key,
    letter_for,
)
from analytics.live import TapePublisher
from analytics.storage import StoreResult, store_isolating
from analytics.watchdog import StalledError, Watchdog
from analytics.windows import SymbolWindow
from cryptoproject.kafka import client_config
from cryptoproject.kafka_internals import rebalance_in_progress
from cryptoproject.redis_clients import redis_client
from ingest.records import (
    DEFAULT_DLQ_RAW_MAX_BYTES,
    DeadLetter,
    InvalidRecordError,
    TradeRecord,
    bounded_raw,
    decode,
    max_clock_skew_ms,
)

logger = logging.getLogger(__name__)


# Failures that may pass on retry: the batch is kept and retried, nothing is committed meanwhile.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    BrokerOperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
    KafkaError,
    DeadLetterDeliveryError,
)

# A commit refused because the group is rebalancing: not an infrastructure failure, see TradeConsumer._commit.
REBALANCE_ERRORS: tuple[type[BaseException], ...] = (
    RebalanceInProgressError,
    CommitFailedError,
    IllegalGenerationError,
    UnknownMemberIdError,
)

#: The name the command and older callers use for :class:`analytics.dlq.InvalidMessageLimitError`.
InvalidRatioError = InvalidMessageLimitError


@dataclass(frozen=True)
class ConsumerConfig:
    """Tuning of one :class:`TradeConsumer`; the defaults suit ``make demo`` and the benchmark."""

    batch_size: int = 5000
    batch_ms: int = 200
    max_records: int | None = None
    idle_exit_s: float | None = None
    max_poll_records: int = 2000
    # Also the group's rebalance timeout: how long the broker waits for every member to rejoin. The loop polls at
    # least every 0.5 s, so 30 s is ample, and it bounds the stall when a member id is left behind by kafka-python's
    # back-to-back rejoin (seen right after a first assignment on a just-created topic).
    max_poll_interval_ms: int = 30_000
    session_timeout_ms: int = 10_000
    dlq_limit: DlqLimit = field(default_factory=DlqLimit)
    dlq_raw_max_bytes: int = DEFAULT_DLQ_RAW_MAX_BYTES
    # The dead-letter producer's longest wait for metadata or buffer space (kafka-python's default is 60 s, twice
    # the poll interval) and for acknowledgements: a dead broker fails the batch, which is retried, in time.
    dlq_max_block_ms: int = 5_000
    dlq_flush_timeout_s: float = 10.0
    # Watchdog bound (None: no watchdog) and whether a loop stuck inside one call ends the process (the command).
    stall_timeout_s: float | None = 120.0
    hard_exit_on_hang: bool = False
    statement_timeout_ms: int | None = 15_000
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    shutdown_retry_s: float = 10.0
    metrics_interval_s: float = 5.0
    tape_interval_s: float = 0.2

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.batch_ms < 1:
            raise ValueError("batch_ms must be at least 1")
        if self.max_records is not None and self.max_records < 1:
            raise ValueError("max_records must be at least 1")
        if self.idle_exit_s is not None and self.idle_exit_s <= 0:
            raise ValueError("idle_exit_s must be positive")
        if self.stall_timeout_s is not None and self.stall_timeout_s <= 0:
            raise ValueError("stall_timeout_s must be positive")
        if self.dlq_max_block_ms >= self.max_poll_interval_ms:
            raise ValueError("dlq_max_block_ms must be below max_poll_interval_ms")

    @classmethod
    def from_settings(cls, **overrides: Any) -> ConsumerConfig:
        """The configuration ``settings`` describe (``CONSUMER_*``, ``DLQ_RAW_MAX_BYTES``), then ``overrides``."""
        values: dict[str, Any] = {
            "dlq_limit": DlqLimit(
                max_invalid_ratio=settings.CONSUMER_MAX_INVALID_RATIO,
                window=settings.CONSUMER_INVALID_WINDOW,
                min_records=min(100, settings.CONSUMER_INVALID_WINDOW),
                max_consecutive=settings.CONSUMER_MAX_CONSECUTIVE_INVALID,
            ),
            "dlq_raw_max_bytes": settings.DLQ_RAW_MAX_BYTES,
            "stall_timeout_s": settings.CONSUMER_STALL_TIMEOUT_S,
            "statement_timeout_ms": settings.CONSUMER_STATEMENT_TIMEOUT_MS,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class Batch:
    """Records read since the last delivery: valid trades, refused records, and the next offset per partition."""

    records: list[TradeRecord] = field(default_factory=list)
    origins: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) of each record
    dead: list[tuple[bytes | None, DeadLetter]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    started: float = 0.0
    # (partition, offset) of the dead letters the DLQ topic acknowledged: a retried batch does not send them again.
    dead_acked: set[tuple[int | None, int | None]] = field(default_factory=set)
    # ... and of those the broker refused for their size: the retry sends them with a shorter raw prefix.
    dead_oversized: set[tuple[int | None, int | None]] = field(default_factory=set)

    @property
    def consumed(self) -> int:
        """Kafka records in the batch, valid or not."""
        return len(self.records) + len(self.dead)

    def __bool__(self) -> bool:
        return bool(self.offsets)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: TradeConsumer) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._owner.on_revoked(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner.on_assigned(assigned)


class TradeConsumer:
    """Consume ``settings.KAFKA_TRADES_TOPIC`` in group ``settings.KAFKA_CONSUMER_GROUP`` and store the trades.

    ``run()`` returns when :meth:`stop` is called (from a signal handler or another thread), after ``max_records``
    or after ``idle_exit_s`` without records; the current batch is delivered and committed first.
    """

    def __init__(
        self,
        config: ConsumerConfig | None = None,
        consumer: KafkaConsumer | None = None,
        producer: KafkaProducer | None = None,
        dispatch: Callable[[list[SymbolWindow]], Any] | None = None,
        tape: TapePublisher | None = None,
    ) -> None:
        self.config = config or ConsumerConfig()
        self.topic: str = settings.KAFKA_TRADES_TOPIC
        self.dlq_topic: str = settings.KAFKA_DLQ_TOPIC
        self.group: str = settings.KAFKA_CONSUMER_GROUP
        self.metrics = ConsumerMetrics()
        self.metrics_key = f"metrics:consumer:{socket.gethostname()}-{os.getpid()}"
        self._stop = threading.Event()
        self._batch = Batch()
        self._retrying = False
        self._backoff = self.config.backoff_initial_s
        self._next_attempt = 0.0
        self._last_record_at = time.monotonic()
        self._last_metrics = 0.0
        self._last_tick = time.monotonic()
        self._uncommitted: dict[TopicPartition, int] = {}
        self._commit_retry_at = 0.0
        self._redis: redis.Redis | None = None
        self._limiter = InvalidMessageLimiter(self.config.dlq_limit)
        self._watchdog = Watchdog(self.config.stall_timeout_s) if self.config.stall_timeout_s else None
        self._skew_ms = max_clock_skew_ms()
        self._consumer = consumer or KafkaConsumer(
            **client_config(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.config.max_poll_records,
            max_poll_interval_ms=self.config.max_poll_interval_ms,
            session_timeout_ms=self.config.session_timeout_ms,
            client_id=f"consume_trades-{socket.gethostname()}-{os.getpid()}",
        )
        self._producer = producer or KafkaProducer(
            **client_config(),
            acks="all",
            linger_ms=5,
            max_block_ms=self.config.dlq_max_block_ms,
            # kafka-python's idempotent producer turns ONE refused batch (a letter over the topic's size limit) into
            # a fatal state that fails every later send with the same error: the partition would stay paused
            # forever. Dead letters are at least once anyway (a retried batch may resend one).
            enable_idempotence=False,
            client_id=f"consume_trades-dlq-{os.getpid()}",
        )
        self._dispatch = dispatch or _default_dispatch
        self._tape = tape or TapePublisher(self.config.tape_interval_s)
        self._dlq = DeadLetterSender(self._producer, self.dlq_topic, self.config.dlq_flush_timeout_s)

    # ----------------------------------------------------------------------------------------- control
    def stop(self) -> None:
        """Ask the loop to finish the current batch, commit and return (safe from signal handlers)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called or a limit was reached."""
        return self._stop.is_set()

    def run(self) -> None:
        """Consume until stopped; raises :class:`InvalidMessageLimitError` when the invalid-message limit is
        exceeded and :class:`StalledError` when the watchdog finds the member stalled (nothing committed then)."""
        # Subscribe, then fetch the topic's metadata, before the first poll joins the group: kafka-python 3.0 builds
        # its metadata snapshot only from updates that arrive after subscribe(); joining with an empty snapshot made
        # the leader see "the metadata changed" right after its first assignment and rebalance again at once (seen
        # at every start), and that back-to-back rejoin is where kafka-python can stall for good.
        self._consumer.subscribe([self.topic], listener=_Rebalance(self))
        self._consumer.partitions_for_topic(self.topic)
        logger.info(
            "consumer started",
            extra={"topic": self.topic, "group": self.group, "batch_size": self.config.batch_size},
        )
        self._last_record_at = time.monotonic()
        backstop = self._start_backstop()
        try:
            while not self._stop.is_set():
                self._last_tick = time.monotonic()
                self._step()
                self._periodic()
            self._shutdown_flush()
        finally:
            if backstop is not None:
                backstop.set()
            self._close()

    def _start_backstop(self) -> threading.Event | None:
        """With ``hard_exit_on_hang``: end the process if one loop turn outlasts the watchdog bound plus the poll
        interval (a call stuck past every timeout); the in-loop watchdog cannot see that. Nothing is committed."""
        if not (self.config.hard_exit_on_hang and self.config.stall_timeout_s):
            return None
        limit = self.config.stall_timeout_s + self.config.max_poll_interval_ms / 1000
        done = threading.Event()

        def watch() -> None:
            while not done.wait(1.0):
                stuck = time.monotonic() - self._last_tick
                if stuck > limit:
                    logger.critical("consumer loop stuck, exiting", extra={"stuck_s": round(stuck, 1)})
                    _hard_exit(70)

        threading.Thread(target=watch, name="consumer-backstop", daemon=True).start()
        return done

    # ----------------------------------------------------------------------------------------- the loop
    def _step(self) -> None:
        now = time.monotonic()
        if self._retrying:
            # Partitions are paused: poll only to stay in the group, then retry when the backoff has elapsed.
            self._consumer.poll(timeout_ms=int(max(0.0, min(self._next_attempt - now, 0.5)) * 1000))
            if time.monotonic() >= self._next_attempt and self._batch:
                self._try_deliver()
            return
        batch = self._batch
        if batch:
            timeout_ms = max(0, int((batch.started + self.config.batch_ms / 1000 - now) * 1000))
        else:
            timeout_ms = min(self.config.batch_ms, 500)
        room = self.config.batch_size - batch.consumed
        polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max(1, room))
        if polled:
            self._last_record_at = time.monotonic()
            for tp, messages in polled.items():
                self._add(tp, messages)
        # A rebalance inside poll() may have delivered the old batch and started a new one.
        batch = self._batch
        full = batch.consumed >= self.config.batch_size
        due = bool(batch) and time.monotonic() >= batch.started + self.config.batch_ms / 1000
        if full or due:
            self._try_deliver()
        elif not batch and self._limits_reached():
            self._stop.set()

    def _add(self, tp: TopicPartition, messages: Sequence[Any]) -> None:
        batch = self._batch
        if not batch:
            batch.started = time.monotonic()
        records, origins = batch.records, batch.origins
        limiter = self._limiter
        skew = self._skew_ms
        # A received_at ahead of this clock would let a forged record carry a trade time from the future.
        horizon = int(time.time() * 1000) + skew
        valid_run = 0
        for message in messages:
            reason = None
            try:
                record = decode(message.value, max_skew_ms=skew)
                if record.received_at > horizon:
                    reason = f"received_at {record.received_at} is ahead of the consumer's clock by more than {skew} ms"
            except InvalidRecordError as exc:
                reason = exc.reason
            except Exception as exc:  # whatever decoding raises, the record must not stop the worker
                reason = f"unexpected {type(exc).__name__} while decoding: {_safe_text(exc)}"
                self.metrics.decode_errors += 1
                logger.exception("record decoding raised unexpectedly", extra={"offset": message.offset})
            if reason is None:
                records.append(record)
                origins.append((message.partition, message.offset))
                valid_run += 1
                continue
            if valid_run:
                limiter.valid(message.partition, valid_run)
                valid_run = 0
            letter = letter_for(message, reason, f"consumer:{self.group}", self.config.dlq_raw_max_bytes)
            batch.dead.append((bounded_key(message.key), letter))
            limiter.invalid(message.partition, message.offset, reason)
        if valid_run:
            limiter.valid(tp.partition, valid_run)
        batch.offsets[tp] = messages[-1].offset + 1
        self.metrics.consumed += len(messages)

    def _limits_reached(self) -> bool:
        if self.config.max_records is not None and self.metrics.consumed >= self.config.max_records:
            logger.info("max records reached", extra={"consumed": self.metrics.consumed})
            return True
        idle = self.config.idle_exit_s
        if idle is not None and time.monotonic() - self._last_record_at >= idle:
            logger.info("idle, exiting", extra={"idle_s": idle})
            return True
        return False

    # ----------------------------------------------------------------------------------------- delivery
    def _try_deliver(self) -> bool:
        """Deliver and commit the current batch; on a transient failure pause and schedule a retry."""
        try:
            self._deliver_and_commit()
        except TRANSIENT_ERRORS as exc:
            self._on_failure(exc)
            return False
        if self._retrying:
            self._retrying = False
            self._backoff = self.config.backoff_initial_s
            self._consumer.resume(*self._consumer.assignment())
            logger.info("delivery recovered, partitions resumed")
        if self._limits_reached():
            self._stop.set()
        return True

    def _on_failure(self, exc: BaseException) -> None:
        self.metrics.failures += 1
        _reset_database_connection()
        delay = self._backoff
        if not self._retrying:
            self._retrying = True
            self._consumer.pause(*self._consumer.assignment())
        logger.warning(
            "batch delivery failed, partitions paused, retrying",
            extra={
                "error": f"{type(exc).__name__}: {exc}".strip()[:300],
                "backoff_s": delay,
                "records": len(self._batch.records),
            },
        )
        self._next_attempt = time.monotonic() + delay
        self._backoff = min(self._backoff * 2, self.config.backoff_max_s)

    def _deliver_and_commit(self) -> None:
        batch = self._batch
        t0 = time.perf_counter()
        result, rejected = self._store(batch.records, batch.origins)
        store_seconds = time.perf_counter() - t0
        # The trades are durable now: show them before the slower steps (task dispatch, DLQ ack, offset commit),
        # which only decide whether a restart re-reads the batch. A retried batch may push a trade twice; the
        # page de-duplicates the tape by trade id.
        self._tape.add(batch.records)
        self._tape.flush()
        if result.windows:
            self._dispatch(result.windows)
        self._send_dead_letters(batch.dead + rejected)
        self._commit(batch.offsets)
        self.metrics.record_batch(result, store_seconds, time.monotonic() - batch.started)
        self.metrics.dead_lettered += len(batch.dead) + len(rejected)
        self._batch = Batch()

    def _store(
        self, records: list[TradeRecord], origins: list[tuple[int, int]]
    ) -> tuple[StoreResult, list[tuple[bytes | None, DeadLetter]]]:
        """Store the batch; the records PostgreSQL refuses are dead-lettered, the rest stored."""
        result, refused = store_isolating(records, self.config.statement_timeout_ms)
        letters: list[tuple[bytes | None, DeadLetter]] = []
        for index, reason in refused:
            record, (partition, offset) = records[index], origins[index]
            raw, length = bounded_raw(record.encode(), self.config.dlq_raw_max_bytes)
            letter = DeadLetter(
                source=f"consumer:{self.group}",
                reason=reason,
                raw=raw,
                raw_length=length,
                received_at=int(time.time() * 1000),
                topic=self.topic,
                partition=partition,
                offset=offset,
            )
            logger.warning("record refused by the database", extra={"reason": reason, "offset": offset})
            letters.append((record.key, letter))
        return result, letters

    def _send_dead_letters(self, letters: list[tuple[bytes | None, DeadLetter]]) -> None:
        batch = self._batch
        self._dlq.send(letters, batch.dead_acked, batch.dead_oversized)

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        # Offsets of stored batches whose commit a rebalance refused go with this one (newer offsets win).
        offsets = {**self._uncommitted, **offsets}
        if not offsets:
            return
        try:
            if self._rebalancing():
                # Asking anyway makes kafka-python refuse and can leave the member's rejoin hanging (seen in tests).
                raise RebalanceInProgressError("the group is rebalancing")
            self._consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
            self._uncommitted = {}
            if self._watchdog is not None:
                self._watchdog.committed()
        except REBALANCE_ERRORS as exc:
            # The batch is already stored and its tasks dispatched: only the commit was refused, because the group
            # is rebalancing. Retrying it (and pausing) would keep this member from completing the rejoin, which
            # only poll() does. The next owner of these partitions re-reads from the last commit (no-op rows).
            # For the partitions this member keeps, the offsets are remembered and committed with the next batch
            # or, on an idle topic, by the loop once the rebalance is over (else the group's lag would stay
            # above zero for good, and /healthz would call the group stalled).
            self._uncommitted = offsets
            self._commit_retry_at = time.monotonic() + 1.0
            self.metrics.commits_skipped += 1
            logger.info(
                "offset commit skipped during a rebalance; the batch is stored",
                extra={"error": type(exc).__name__, "partitions": sorted(tp.partition for tp in offsets)},
            )

    def _commit_leftovers(self) -> None:
        """Commit the offsets a rebalance refused (nothing else to commit them with); failures wait a second."""
        try:
            self._commit({})
        except TRANSIENT_ERRORS as exc:
            self._commit_retry_at = time.monotonic() + 1.0
            logger.warning("offset commit failed, retrying", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})

    def _rebalancing(self) -> bool:
        return rebalance_in_progress(self._consumer)

    # ----------------------------------------------------------------------------------------- rebalance, shutdown
    def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Note the rebalance; the in-flight batch is trimmed once the new assignment is known.

        kafka-python 3 runs rebalance listeners on its network thread, where the blocking consumer calls (commit)
        are refused and a slow store would stall heartbeats: the batch is neither stored nor committed here.
        """
        logger.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Abandon the in-flight records of partitions this member lost; keep those of partitions it kept.

        Nothing of the batch was stored or committed, so the new owner of a lost partition re-reads its records
        from the last commit. A kept partition keeps its fetch position (kafka-python preserves it), so its records
        stay in the batch and the batch goes on from there.
        """
        logger.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)})
        self._limiter.retain(tp.partition for tp in assigned)
        self._uncommitted = {tp: o for tp, o in self._uncommitted.items() if tp in assigned}
        batch = self._batch
        lost = {tp.partition for tp in batch.offsets if tp not in assigned}
        if lost:
            kept = [i for i, (partition, _) in enumerate(batch.origins) if partition not in lost]
            trimmed = Batch(
                records=[batch.records[i] for i in kept],
                origins=[batch.origins[i] for i in kept],
                dead=[(key, letter) for key, letter in batch.dead if letter.partition not in lost],
                offsets={tp: o for tp, o in batch.offsets.items() if tp.partition not in lost},
                started=batch.started,
                dead_acked={i for i in batch.dead_acked if i[0] not in lost},
                dead_oversized={i for i in batch.dead_oversized if i[0] not in lost},
            )
            logger.info(
                "in-flight records of lost partitions abandoned",
                extra={"partitions": sorted(lost), "records": batch.consumed - trimmed.consumed},
            )
            self._batch = trimmed
        if self._retrying:
            if self._batch:
                # Newly assigned partitions start unpaused: keep every partition paused until the batch is stored.
                self._consumer.pause(*assigned)
            else:
                self._retrying = False
                self._backoff = self.config.backoff_initial_s
                self._consumer.resume(*assigned)

    def _shutdown_flush(self) -> None:
        deadline = time.monotonic() + self.config.shutdown_retry_s
        while self._batch and time.monotonic() < deadline:
            if self._retrying:
                wait = max(0.0, min(self._next_attempt, deadline) - time.monotonic())
                self._consumer.poll(timeout_ms=int(wait * 1000))
            if self._try_deliver():
                break
        if self._batch:
            logger.warning("shutdown: batch not stored, left uncommitted", extra={"records": self._batch.consumed})
        elif self._uncommitted:
            self._commit_leftovers()
        self._publish_metrics()

    def _close(self) -> None:
        try:
            self._producer.flush(timeout=10)
            self._producer.close(timeout=10)
        finally:
            self._consumer.close(autocommit=False)
            logger.info("consumer stopped", extra=self.metrics.snapshot())

    # ----------------------------------------------------------------------------------------- metrics
    def _periodic(self) -> None:
        if self._tape.pending:
            self._tape.flush()
        now = time.monotonic()
        if self._uncommitted and not self._batch and not self._retrying and now >= self._commit_retry_at:
            self._commit_leftovers()
        if now - self._last_metrics >= self.config.metrics_interval_s:
            self._last_metrics = now
            self._update_lag()
            self._publish_metrics()
        self._check_watchdog()

    def _check_watchdog(self) -> None:
        watchdog = self._watchdog
        if watchdog is None:
            return
        pending = sum(self.metrics.lag.values()) + self._batch.consumed
        watchdog.observe(len(self._consumer.assignment()), pending)
        why = watchdog.verdict()
        if why is not None:
            logger.error("consumer stalled, exiting for a restart", extra={"reason": why})
            self._publish_metrics()
            raise StalledError(f"consumer stalled: {why}")

    def _update_lag(self) -> None:
        if not self._consumer.assignment():
            self.metrics.lag = {}
            self._sample_group()
            return
        lag = partition_lag(self._consumer)
        if lag is not None:
            self.metrics.lag = lag

    def _sample_group(self) -> None:
        """Without partitions: the group's committed offsets and lag, so the watchdog can tell idle from stalled.

        Only after half the bound without partitions: a member joining (or rejoining) the group is left alone.
        """
        if self._watchdog is None or self._watchdog.unassigned_for() < self._watchdog.timeout_s / 2:
            return
        offsets = group_offsets(self._consumer, self.topic)
        if offsets is not None:
            self._watchdog.observe_group(*offsets)

    def _publish_metrics(self) -> None:
        snapshot = self.metrics.snapshot()
        if self._watchdog is not None:
            snapshot.update(self._watchdog.snapshot())
        logger.info("consumer metrics", extra={"metrics": snapshot})
        try:
            if self._redis is None:
                self._redis = redis_client()
            self._redis.set(self.metrics_key, orjson.dumps(snapshot), ex=30)
        except redis.RedisError:
            logger.warning("metrics snapshot not written to Redis", exc_info=True)


def _safe_text(exc: BaseException) -> str:
    try:
        return str(exc)[:200]
    except Exception:  # noqa: BLE001 - an exception whose text cannot be built still gets a reason
        return "<no message>"


def _hard_exit(code: int) -> None:  # pragma: no cover - replaced in tests; ends the process without cleanup
    os._exit(code)


def _reset_database_connection() -> None:
    # A broken connection stays broken inside Django until closed: the next attempt must open a fresh one.
    with contextlib.suppress(OperationalError, InterfaceError):
        connection.close()


def _default_dispatch(windows: list[SymbolWindow]) -> Any:
    from analytics.dispatch import dispatch_batch

    return dispatch_batch(windows)
