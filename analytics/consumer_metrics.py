"""What ``consume_trades`` reports: counters since start, and the lag read from the broker.

:meth:`ConsumerMetrics.snapshot` is the log line's ``metrics`` and the ``metrics:consumer:<host>-<pid>`` Redis key
that ``/healthz`` and the health page read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from analytics.storage import StoreResult

logger = logging.getLogger(__name__)

#: bound of each broker call made for the lag figures (the loop's calls all time out below its poll interval)
LAG_TIMEOUT_MS = 2000


@dataclass
class ConsumerMetrics:
    """Counters since start; :meth:`snapshot` is what the log line and the Redis key carry."""

    consumed: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    decode_errors: int = 0
    batches: int = 0
    failures: int = 0
    commits_skipped: int = 0
    store_seconds: float = 0.0
    stored_rows: int = 0
    last_batch_latency_ms: float = 0.0
    max_batch_latency_ms: float = 0.0
    lag: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def record_batch(self, result: StoreResult, store_seconds: float, latency_s: float) -> None:
        """Account for one delivered batch."""
        self.batches += 1
        self.stored += result.inserted
        self.duplicates += result.duplicates
        self.store_seconds += store_seconds
        self.stored_rows += result.received
        self.last_batch_latency_ms = latency_s * 1000
        self.max_batch_latency_ms = max(self.max_batch_latency_ms, self.last_batch_latency_ms)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready dict of every figure."""
        return {
            "consumed": self.consumed,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "decode_errors": self.decode_errors,
            "batches": self.batches,
            "failures": self.failures,
            "commits_skipped": self.commits_skipped,
            "store_rows_per_s": round(self.stored_rows / self.store_seconds, 1) if self.store_seconds else 0.0,
            "last_batch_latency_ms": round(self.last_batch_latency_ms, 1),
            "max_batch_latency_ms": round(self.max_batch_latency_ms, 1),
            "lag": dict(self.lag),
            "lag_total": sum(self.lag.values()),
            "uptime_s": round(time.time() - self.started, 1),
            "updated_at": int(time.time() * 1000),
        }


def partition_lag(consumer: KafkaConsumer) -> dict[str, int] | None:
    """Records behind the end of each assigned partition (``"topic:partition"``); ``None`` if the broker did not
    answer (the previous figure stands)."""
    assignment = consumer.assignment()
    try:
        ends = consumer.end_offsets(list(assignment), timeout_ms=LAG_TIMEOUT_MS)
    except KafkaError:
        logger.warning("end offsets unavailable for the lag metric", exc_info=True)
        return None
    lag: dict[str, int] = {}
    for tp, end in ends.items():
        position = consumer.position(tp, timeout_ms=LAG_TIMEOUT_MS)
        if position is not None:
            lag[f"{tp.topic}:{tp.partition}"] = max(0, end - position)
    return lag


def group_offsets(consumer: KafkaConsumer, topic: str) -> tuple[dict[int, int], int] | None:
    """The group's committed offset per partition of ``topic`` and its total lag; ``None`` if the broker did not
    answer. Works without an assignment (what the watchdog needs to tell an idle member from a stalled group)."""
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = consumer.end_offsets(tps, timeout_ms=LAG_TIMEOUT_MS)
        committed = {tp.partition: consumer.committed(tp, timeout_ms=LAG_TIMEOUT_MS) or 0 for tp in tps}
    except KafkaError:
        logger.warning("group offsets unavailable for the watchdog", exc_info=True)
        return None
    return committed, sum(max(0, end - committed[tp.partition]) for tp, end in ends.items())
