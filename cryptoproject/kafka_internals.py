"""Every use of kafka-python's private internals, in one module behind a small interface.

The pinned kafka-python (:data:`PINNED_VERSION`) offers no public way to do three things the project needs:

- append records to its batches without ``send()``'s per-record cost, with one callback per batch
  (:class:`BatchAppender`, ``ingest.producer``: about half of ingest's CPU per trade, docs/BENCHMARKS.md);
- close a producer without flushing first (:func:`force_close`) and register topics for metadata without blocking
  (:func:`register_topics`);
- ask a consumer whether its group is rebalancing (:func:`rebalance_in_progress`, ``analytics.consumer``).

:func:`missing_internals` lists what of this a given producer and consumer lack; ``tests/foundation`` calls it on
real clients and fails, naming each missing attribute and the version, when an upgrade moves them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import kafka
from kafka import KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors
from kafka.structs import TopicPartition

from cryptoproject.internals import missing_paths

#: the kafka-python release these internals were read from (requirements/base.in pins it)
PINNED_VERSION = "3.0.12"
#: (object, attribute path) pairs this module reads or replaces, checked by :func:`missing_internals`
PRODUCER_INTERNALS = (
    "_accumulator",
    "_accumulator._batches",
    "_accumulator._tp_lock",
    "_accumulator.append",
    "_accumulator.split_and_reenqueue",
    "_sender",
    "_sender.add_topic",
    "_sender.force_close",
    "_sender.wakeup",
)
CONSUMER_INTERNALS = ("_coordinator", "_coordinator.rebalance_in_progress")

_NO_HEADERS: tuple[()] = ()


def missing_internals(producer: KafkaProducer | None = None, consumer: KafkaConsumer | None = None) -> list[str]:
    """The internals the given clients lack (``[]`` with the pinned kafka-python), as ``Class.path`` strings."""
    missing = []
    for client, paths in ((producer, PRODUCER_INTERNALS), (consumer, CONSUMER_INTERNALS)):
        if client is not None:
            missing += missing_paths(client, paths)
    return missing


def installed_version() -> str:
    """The kafka-python version importable here."""
    return str(kafka.__version__)


def rebalance_in_progress(consumer: KafkaConsumer) -> bool:
    """Whether ``consumer``'s group is rebalancing (kafka-python has no public call; its coordinator's own check)."""
    coordinator = getattr(consumer, "_coordinator", None)
    check = getattr(coordinator, "rebalance_in_progress", None)
    return bool(check()) if callable(check) else False


#: one held record: key, value, receipt time (epoch ms, also the record's timestamp)
Held = tuple[bytes, bytes, int]


class OpenBatch:
    """A batch of one partition: the records it holds (kept until acknowledged), its produce future, and ``seq``:
    the lowest append sequence number of its records (a caller's count; 0 when it keeps none)."""

    __slots__ = ("future", "records", "seq", "tp")

    def __init__(self, future: Any, tp: TopicPartition, records: list[Held], seq: int = 0) -> None:
        self.future = future  # the batch's FutureProduceResult: one callback per batch, not per record
        self.tp = tp
        self.records = records
        self.seq = seq

    @property
    def first_received_at(self) -> int:
        """Receipt time of the batch's oldest record (epoch ms)."""
        return self.records[0][2]


class BatchAppender:
    """Appends records straight into kafka-python's record accumulator, with one callback per batch.

    ``KafkaProducer.send()`` costs ~20 µs of Python per record (argument checks, size estimates, a debug log
    line that formats the producer, one future and two callbacks per record); on one core that alone caps a
    process near 40k records/s. This appends each record to the open batch of its partition under the
    accumulator's own partition lock, which is what ``send()`` does in the end, and tracks each batch's records
    until it completes. Batches, sequence numbers (idempotence), linger, compression and retries stay
    kafka-python's.

    It relies on internals of the pinned kafka-python (``_accumulator``, ``_sender``, ``_metadata``):
    :meth:`supported` checks them, and :class:`TradeProducer` falls back to ``send()`` when they are missing.
    A batch the broker refuses as too large is split by kafka-python; the split is wrapped so the halves take
    over its records.
    """

    def __init__(
        self,
        producer: KafkaProducer,
        on_done: Callable[[OpenBatch, BaseException | None], None],
        on_open: Callable[[OpenBatch, OpenBatch | None], None] | None = None,
    ) -> None:
        # told of every batch it starts tracking, and for a split's half, of the batch it replaces
        self._on_open = on_open
        self._accumulator = producer._accumulator
        self._sender = producer._sender
        self._batches = self._accumulator._batches
        self._locks: dict[TopicPartition, Any] = {}
        self._open: dict[TopicPartition, OpenBatch] = {}
        self._tracked: dict[Any, OpenBatch] = {}  # produce future -> batch, until it completes
        self._on_done = on_done
        self._split = self._accumulator.split_and_reenqueue
        self._accumulator.split_and_reenqueue = self._split_and_reenqueue

    @staticmethod
    def supported(producer: KafkaProducer) -> bool:
        """True when ``producer`` has the internals this appender uses (the pinned kafka-python does)."""
        return not missing_internals(producer=producer)

    def append(self, tp: TopicPartition, key: bytes, value: bytes, received_at: int, seq: int = 0) -> None:
        """Add one record (timestamped with its receipt time, ``seq`` its caller's sequence number) to ``tp``'s
        open batch, or start a new batch."""
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
                    batch.records.append((key, value, received_at))
                    if seq < batch.seq:  # a re-sent record joins a batch of newer ones
                        batch.seq = seq
                    return
        record_future, _full, new_batch, _abort = self._accumulator.append(tp, received_at, key, value, [])
        produce_future = record_future._produce_future
        if new_batch:
            batch = OpenBatch(produce_future, tp, [(key, value, received_at)], seq)
            self._open[tp] = self._tracked[produce_future] = batch
            if self._on_open is not None:
                self._on_open(batch, None)
            produce_future.add_both(self._done, batch)
            self._sender.wakeup()
        else:  # pragma: no cover - the open batch is one we do not track (a split's half)
            single = OpenBatch(record_future, tp, [(key, value, received_at)], seq)
            if self._on_open is not None:
                self._on_open(single, None)
            record_future.add_both(self._done, single)

    def _split_and_reenqueue(self, batch: Any, now: float | None = None) -> int:
        """kafka-python's split of an oversized batch; the new batches take over its records, in order."""
        created: int = self._split(batch, now)
        tracked = self._tracked.pop(batch.produce_future, None)
        if tracked is not None:
            tp = batch.topic_partition
            with self._accumulator._tp_lock(tp):
                halves = list(self._batches[tp])[:created]  # the split batches are put at the front, in order
            start = 0
            for half in halves:
                end = start + half.record_count
                replacement = self._tracked[half.produce_future] = OpenBatch(
                    half.produce_future, tp, tracked.records[start:end], tracked.seq
                )
                if self._on_open is not None:
                    self._on_open(replacement, tracked)
                start = end
                half.produce_future.add_both(self._done, replacement)
        return created

    def _done(self, batch: OpenBatch, result: Any) -> None:
        self._tracked.pop(batch.future, None)
        if isinstance(result, BaseException):  # a record future of an untracked batch failed
            self._on_done(batch, result)
        elif isinstance(result, tuple):  # a batch: (base_offset, timestamp, record_exceptions_fn or None)
            record_exceptions = result[2]
            self._on_done(batch, record_exceptions(0) if record_exceptions is not None else None)
        else:  # pragma: no cover - a record future resolves to RecordMetadata
            self._on_done(batch, None)


def register_topics(producer: KafkaProducer, topics: Iterable[str]) -> None:
    """Ask ``producer`` to keep metadata for ``topics`` without blocking (the appender bypasses ``send()``)."""
    for topic in topics:
        producer._sender.add_topic(topic)


def force_close(producer: KafkaProducer, timeout: float = 10.0) -> None:
    """Close ``producer`` without waiting for the broker: its unfinished batches fail (callbacks run) now.

    ``KafkaProducer.close()`` first flushes, which waits for ever on a batch it has split and raises on a
    timeout before it stops its sender; this stops the sender first, so every batch completes (aborted).
    """
    sender = producer._sender
    sender.force_close()
    sender.join(timeout)
    with contextlib.suppress(kafka_errors.KafkaError):
        producer.close(timeout=0)
