"""The ``market.trades`` consumer-group worker behind ``manage.py consume_trades``: the loop that wires the steps.

One loop, one thread: poll -> decode (:mod:`~analytics.consumer.decode`) -> batch (:mod:`~analytics.consumer.batch`,
``batch_size`` records or ``batch_ms``) -> deliver (:mod:`~analytics.consumer.delivery`): store
(:mod:`~analytics.consumer.store`) -> fan-out (:mod:`~analytics.consumer.fanout`) -> dead letters
(:mod:`~analytics.consumer.dead_letters`) -> commit (:mod:`~analytics.consumer.commit`). Each step is a small class
tested without a broker; this loop keeps what needs one: polling, pause/resume, rebalance callbacks, shutdown, and
the periodic lag, metrics and watchdog.

A rebalance never blocks: the in-flight records of partitions this member loses are dropped uncommitted (their new
owner re-reads them from the last commit), those of partitions it keeps stay in the batch.

Failures of PostgreSQL, the Celery broker or Kafka while delivering (the dead-letter topic included) are
infrastructure failures (:data:`~analytics.consumer.errors.TRANSIENT_ERRORS`): nothing is committed, the assigned
partitions are paused (``poll`` keeps the group membership alive without buffering more records) and the same batch
is retried with exponential backoff until it goes through. Bad records are data failures: the decode step makes
them dead letters, unless the invalid-message limit of :mod:`analytics.dlq` is exceeded on a partition, which means
a bug (a schema change, a wrong topic) and stops the worker without committing.

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
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from analytics.consumer.backstop import Backstop
from analytics.consumer.batch import Batch, BatchPolicy
from analytics.consumer.commit import Commit
from analytics.consumer.config import ConsumerConfig
from analytics.consumer.dead_letters import DeadLetterSender, dlq_producer
from analytics.consumer.decode import Decode
from analytics.consumer.delivery import Delivery
from analytics.consumer.errors import TRANSIENT_ERRORS
from analytics.consumer.fanout import Dispatch, FanOut, default_dispatch
from analytics.consumer.metrics import LAG_TIMEOUT_MS, ConsumerMetrics, SnapshotPublisher
from analytics.consumer.store import Store
from analytics.dlq import InvalidMessageLimiter
from analytics.live import TapePublisher
from analytics.signals import consumer_reassigned
from analytics.watchdog import StalledError, Watchdog
from cryptoproject.kafka import client_config
from cryptoproject.kafka_internals import rebalance_in_progress
from cryptoproject.kafka_offsets import committed_by_member, group_lag, member_lag, topic_partitions
from ingest.records import max_clock_skew_ms

logger = logging.getLogger(__name__)


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
    or after ``idle_exit_s`` without records; the current batch is delivered and committed first. The steps are
    public attributes (``decode``, ``store``, ``fanout``, ``dead_letters``, ``commit``, ``deliver``).
    """

    def __init__(
        self,
        config: ConsumerConfig | None = None,
        consumer: KafkaConsumer | None = None,
        producer: KafkaProducer | None = None,
        dispatch: Dispatch | None = None,
        tape: TapePublisher | None = None,
    ) -> None:
        self.config = config = config or ConsumerConfig()
        self.topic: str = settings.KAFKA_TRADES_TOPIC
        self.dlq_topic: str = settings.KAFKA_DLQ_TOPIC
        self.group: str = settings.KAFKA_CONSUMER_GROUP
        member = f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = ConsumerMetrics()
        self.publisher = SnapshotPublisher(member)
        self.metrics_key = self.publisher.key
        self.watchdog = Watchdog(config.stall_timeout_s) if config.stall_timeout_s else None
        self.limiter = InvalidMessageLimiter(config.dlq_limit)
        self.policy = BatchPolicy(config.batch_size, config.batch_ms)
        self._stop = threading.Event()
        self._batch = Batch()
        self._retrying = False
        self._backoff = config.backoff_initial_s
        self._next_attempt = 0.0
        self._last_record_at = time.monotonic()
        self._last_metrics = 0.0
        self._consumer = consumer or KafkaConsumer(
            **client_config(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=config.max_poll_records,
            max_poll_interval_ms=config.max_poll_interval_ms,
            session_timeout_ms=config.session_timeout_ms,
            client_id=f"consume_trades-{member}",
        )
        self._producer = producer or dlq_producer(config)
        source = f"consumer:{self.group}"
        self.decode = Decode(source, self.limiter, self.metrics, max_clock_skew_ms(), config.dlq_raw_max_bytes)
        self.store = Store(source, self.topic, config.dlq_raw_max_bytes, config.statement_timeout_ms)
        self.fanout = FanOut(dispatch or default_dispatch, tape or TapePublisher(config.tape_interval_s))
        self.dead_letters = DeadLetterSender(self._producer, self.dlq_topic, config.dlq_flush_timeout_s)
        self.commit = Commit(
            self._commit_offsets,
            lambda: rebalance_in_progress(self._consumer),
            self.metrics,
            on_committed=self.watchdog.committed if self.watchdog is not None else lambda: None,
        )
        self.deliver = Delivery(self.store, self.fanout, self.dead_letters.send, self.commit, self.metrics)
        self.backstop = Backstop.for_loop(config.hard_exit_on_hang, config.stall_timeout_s, config.max_poll_interval_ms)

    # ----------------------------------------------------------------------------------------- control
    def stop(self) -> None:
        """Ask the loop to finish the current batch, commit and return (safe from signal handlers)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called or a limit was reached."""
        return self._stop.is_set()

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns right now."""
        return set(self._consumer.assignment())

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
        if self.backstop is not None:
            self.backstop.tick()
            self.backstop.start()
        try:
            while not self._stop.is_set():
                if self.backstop is not None:
                    self.backstop.tick()
                self._step()
                self._periodic()
            self._shutdown_flush()
        finally:
            if self.backstop is not None:
                self.backstop.stop()
            self.close()

    def close(self) -> None:
        """Flush and close the dead-letter producer, then leave the group without committing."""
        try:
            self._producer.flush(timeout=10)
            self._producer.close(timeout=10)
        finally:
            self._consumer.close(autocommit=False)
            logger.info("consumer stopped", extra=self.metrics.snapshot())

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
        polled = self._consumer.poll(
            timeout_ms=self.policy.poll_timeout_ms(batch, now), max_records=self.policy.room(batch)
        )
        if polled:
            self._last_record_at = time.monotonic()
            for tp, messages in polled.items():
                # self._batch, not the local: a rebalance inside poll() may have replaced the batch.
                self._batch.add(tp, self.decode(tp.partition, messages), time.monotonic())
        # A rebalance inside poll() may have delivered the old batch and started a new one.
        batch = self._batch
        if self.policy.ready(batch, time.monotonic()):
            self._try_deliver()
        elif not batch and self._limits_reached():
            self._stop.set()

    def _limits_reached(self) -> bool:
        if self.config.max_records is not None and self.metrics.consumed >= self.config.max_records:
            logger.info("max records reached", extra={"consumed": self.metrics.consumed})
            return True
        idle = self.config.idle_exit_s
        if idle is not None and time.monotonic() - self._last_record_at >= idle:
            logger.info("idle, exiting", extra={"idle_s": idle})
            return True
        return False

    def _commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})

    # ----------------------------------------------------------------------------------------- delivery
    def _try_deliver(self) -> bool:
        """Deliver and commit the current batch; on a transient failure pause and schedule a retry."""
        try:
            self.deliver(self._batch)
        except TRANSIENT_ERRORS as exc:
            self._on_failure(exc)
            return False
        self._batch = Batch()
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
        # Per-market state held for the stored trades (alert rules) may have moved on under another member.
        consumer_reassigned.send(sender=type(self))
        self.limiter.retain(tp.partition for tp in assigned)
        self.commit.retain(assigned)
        batch = self._batch
        lost = batch.partitions() - {tp.partition for tp in assigned}
        if lost:
            trimmed = batch.without(lost)
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
        elif self.commit.pending:
            self.commit.leftovers()
        self.publish_metrics()

    # ----------------------------------------------------------------------------------------- metrics
    def _periodic(self) -> None:
        self.fanout.flush()
        if not self._batch and not self._retrying and self.commit.leftovers_due():
            self.commit.leftovers()
        now = time.monotonic()
        if now - self._last_metrics >= self.config.metrics_interval_s:
            self._last_metrics = now
            self._update_lag()
            self.publish_metrics()
        self._check_watchdog()

    def _check_watchdog(self) -> None:
        watchdog = self.watchdog
        if watchdog is None:
            return
        pending = sum(self.metrics.lag.values()) + self._batch.consumed
        watchdog.observe(len(self._consumer.assignment()), pending)
        why = watchdog.verdict()
        if why is not None:
            logger.error("consumer stalled, exiting for a restart", extra={"reason": why})
            self.publish_metrics()
            raise StalledError(f"consumer stalled: {why}")

    def _update_lag(self) -> None:
        if not self._consumer.assignment():
            self.metrics.lag = {}
            self._sample_group()
            return
        try:
            self.metrics.lag = member_lag(self._consumer, LAG_TIMEOUT_MS)
        except KafkaError:
            logger.warning("end offsets unavailable for the lag metric", exc_info=True)  # the previous figure stands

    def _sample_group(self) -> None:
        """Without partitions: the group's committed offsets and lag, so the watchdog can tell idle from stalled.

        Only after half the bound without partitions: a member joining (or rejoining) the group is left alone.
        """
        if self.watchdog is None or self.watchdog.unassigned_for() < self.watchdog.timeout_s / 2:
            return
        try:
            partitions = topic_partitions(self._consumer, self.topic)
            committed = committed_by_member(self._consumer, partitions, LAG_TIMEOUT_MS)
            lag = group_lag(self._consumer, self.group, partitions, committed, LAG_TIMEOUT_MS)
        except KafkaError:
            logger.warning("group offsets unavailable for the watchdog", exc_info=True)
            return
        self.watchdog.observe_group(lag.committed, lag.total)

    def publish_metrics(self) -> None:
        """Log the metrics snapshot (with the watchdog's figures) and write it to Redis (failures logged only)."""
        snapshot: dict[str, Any] = self.metrics.snapshot()
        if self.watchdog is not None:
            snapshot.update(self.watchdog.snapshot())
        self.publisher.publish(snapshot)


def _reset_database_connection() -> None:
    # A broken connection stays broken inside Django until closed: the next attempt must open a fresh one.
    with contextlib.suppress(OperationalError, InterfaceError):
        connection.close()
