"""The consumer's batch step: decoded records gather in a :class:`Batch` until it is full (``batch_size`` Kafka
records) or due (``batch_ms`` after its first record); :class:`BatchPolicy` decides, on a clock the caller passes.

A batch keeps, per partition, the next offset to commit, and the dead letters of its refused records with the ids of
those the dead-letter topic already acknowledged (a retried batch does not send them again). :meth:`Batch.without`
drops the records of partitions a rebalance took away (their new owner re-reads them from the last commit).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from kafka import TopicPartition

from analytics.consumer.dead_letters import Letter, LetterId
from ingest.records import TradeRecord


@dataclass
class Decoded:
    """What the decode step made of one partition's polled records: the valid trades with their (partition,
    offset), the refused records as dead letters, and the partition's next offset."""

    records: list[TradeRecord] = field(default_factory=list)
    origins: list[tuple[int, int]] = field(default_factory=list)
    dead: list[Letter] = field(default_factory=list)
    next_offset: int = 0

    @property
    def consumed(self) -> int:
        """Kafka records decoded, valid or not."""
        return len(self.records) + len(self.dead)


@dataclass
class Batch:
    """Records read since the last delivery: valid trades, refused records, and the next offset per partition."""

    records: list[TradeRecord] = field(default_factory=list)
    origins: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) of each record
    dead: list[Letter] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    started: float = 0.0
    # (partition, offset) of the dead letters the DLQ topic acknowledged: a retried batch does not send them again.
    dead_acked: set[LetterId] = field(default_factory=set)
    # ... and of those the broker refused for their size: the retry sends them with a shorter raw prefix.
    dead_oversized: set[LetterId] = field(default_factory=set)

    @property
    def consumed(self) -> int:
        """Kafka records in the batch, valid or not."""
        return len(self.records) + len(self.dead)

    def __bool__(self) -> bool:
        return bool(self.offsets)

    def add(self, tp: TopicPartition, decoded: Decoded, now: float) -> None:
        """Append one partition's decoded records; the first records of an empty batch start its clock at ``now``."""
        if not self:
            self.started = now
        self.records += decoded.records
        self.origins += decoded.origins
        self.dead += decoded.dead
        self.offsets[tp] = decoded.next_offset

    def partitions(self) -> set[int]:
        """The partitions the batch holds records of."""
        return {tp.partition for tp in self.offsets}

    def without(self, lost: Collection[int]) -> Batch:
        """This batch without the records, letters and offsets of the partitions in ``lost``."""
        kept = [i for i, (partition, _) in enumerate(self.origins) if partition not in lost]
        return Batch(
            records=[self.records[i] for i in kept],
            origins=[self.origins[i] for i in kept],
            dead=[(key, letter) for key, letter in self.dead if letter.partition not in lost],
            offsets={tp: o for tp, o in self.offsets.items() if tp.partition not in lost},
            started=self.started,
            dead_acked={i for i in self.dead_acked if i[0] not in lost},
            dead_oversized={i for i in self.dead_oversized if i[0] not in lost},
        )


@dataclass(frozen=True)
class BatchPolicy:
    """When a batch is delivered: at ``size`` Kafka records or ``max_ms`` after its first record."""

    size: int
    max_ms: int

    def room(self, batch: Batch) -> int:
        """How many records the next poll may add (at least one, so a poll always makes progress)."""
        return max(1, self.size - batch.consumed)

    def poll_timeout_ms(self, batch: Batch, now: float) -> int:
        """How long the next poll may wait: until the batch is due, or (no batch) at most half a second."""
        if batch:
            return max(0, int((batch.started + self.max_ms / 1000 - now) * 1000))
        return min(self.max_ms, 500)

    def ready(self, batch: Batch, now: float) -> bool:
        """Whether ``batch`` is full or due at ``now``."""
        if not batch:
            return False
        return batch.consumed >= self.size or now >= batch.started + self.max_ms / 1000
