"""Kafka offsets and lag of a consumer group, and the Redis keys of the metrics snapshots: one place, one rule.

The rule for a partition's lag (the consumer's watchdog and the health page both use :func:`partition_lag`):

- committed: the end offset minus the committed offset;
- never committed (no offset, or Kafka's ``-1``): the whole retained backlog, the end minus the beginning offset,
  and ``committed`` is ``None`` (``null`` in ``/api/v1/health``). The group starts such a partition from its
  earliest retained record (``auto_offset_reset="earliest"``), so that backlog is what it still has to read.

Lag is never negative. A member's own lag per assigned partition (:func:`member_lag`) is a different figure: the end
minus its fetch position, the records it has not fetched yet (its batch in flight is counted by the consumer).

The snapshot keys: ingest writes ``metrics:ingest:<exchange>``, each ``consume_trades`` process
``metrics:consumer:<host>-<pid>``, both JSON with a :data:`METRICS_TTL_SECONDS` expiry; ``dashboard.health`` reads
them by prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

#: prefix of the ingest processes' snapshots, one per exchange
INGEST_METRICS_PREFIX = "metrics:ingest:"
#: prefix of the consume_trades processes' snapshots, one per member
CONSUMER_METRICS_PREFIX = "metrics:consumer:"
#: how long a snapshot outlives its writer (every writer refreshes it well within this)
METRICS_TTL_SECONDS = 30


def ingest_metrics_key(exchange: str) -> str:
    """The Redis key of one exchange's ingest snapshot."""
    return f"{INGEST_METRICS_PREFIX}{exchange}"


def consumer_metrics_key(member: str) -> str:
    """The Redis key of one consumer member's snapshot (``member`` is ``<host>-<pid>``)."""
    return f"{CONSUMER_METRICS_PREFIX}{member}"


@dataclass(frozen=True)
class PartitionLag:
    """One partition of a group's topic: its committed offset (``None``: never committed), beginning and end."""

    partition: int
    committed: int | None
    begin: int
    end: int

    @property
    def lag(self) -> int:
        """Records the group has still to read (the rule in this module's docstring)."""
        start = self.begin if self.committed is None else self.committed
        return max(0, self.end - start)

    def as_dict(self) -> dict[str, Any]:
        """The row of ``/api/v1/health``'s ``kafka.partitions``."""
        return {"partition": self.partition, "committed": self.committed, "end": self.end, "lag": self.lag}


def partition_lag(partition: int, committed: int | None, begin: int, end: int) -> PartitionLag:
    """A :class:`PartitionLag`; a negative ``committed`` (Kafka's "no offset") counts as never committed."""
    return PartitionLag(partition, committed if committed is not None and committed >= 0 else None, begin, end)


@dataclass(frozen=True)
class GroupLag:
    """The lag of ``group`` on every partition of ``topic``, partitions in order."""

    group: str
    topic: str
    partitions: tuple[PartitionLag, ...]

    @property
    def total(self) -> int:
        """The lag summed over the partitions."""
        return sum(p.lag for p in self.partitions)

    @property
    def committed(self) -> dict[int, int | None]:
        """The committed offset per partition (``None``: never committed)."""
        return {p.partition: p.committed for p in self.partitions}


def topic_partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` the client knows of, in order (empty when it knows none)."""
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def committed_by_admin(admin: KafkaAdminClient, group: str, topic: str) -> dict[int, int | None]:
    """``group``'s committed offsets on ``topic`` in one request (no group member needed); absent: never committed."""
    offsets = admin.list_group_offsets(group).get(group, {})
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


def committed_by_member(
    consumer: KafkaConsumer, partitions: Iterable[TopicPartition], timeout_ms: int
) -> dict[int, int | None]:
    """The committed offsets of ``consumer``'s own group (``None``: never committed)."""
    return {tp.partition: consumer.committed(tp, timeout_ms=timeout_ms) for tp in partitions}


def group_lag(
    consumer: KafkaConsumer,
    group: str,
    partitions: list[TopicPartition],
    committed: Mapping[int, int | None],
    timeout_ms: int,
) -> GroupLag:
    """The lag of ``group`` on ``partitions`` (of one topic), from ``committed`` and the partitions' beginning and
    end offsets read with ``consumer``. Raises kafka-python's errors (the caller decides what unknown means)."""
    topic = partitions[0].topic if partitions else ""
    ends = consumer.end_offsets(partitions, timeout_ms=timeout_ms) if partitions else {}
    begins = consumer.beginning_offsets(partitions, timeout_ms=timeout_ms) if partitions else {}
    rows = tuple(partition_lag(tp.partition, committed.get(tp.partition), begins[tp], ends[tp]) for tp in partitions)
    return GroupLag(group, topic, rows)


def member_lag(consumer: KafkaConsumer, timeout_ms: int) -> dict[str, int]:
    """Records behind the end of each partition assigned to ``consumer`` (``"topic:partition"``): the end minus
    its fetch position; a partition whose position is unknown is left out. Raises kafka-python's errors."""
    ends = consumer.end_offsets(list(consumer.assignment()), timeout_ms=timeout_ms)
    lag: dict[str, int] = {}
    for tp, end in ends.items():
        position = consumer.position(tp, timeout_ms=timeout_ms)
        if position is not None:
            lag[f"{tp.topic}:{tp.partition}"] = max(0, end - position)
    return lag
