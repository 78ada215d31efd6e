"""What ``consume_trades`` reports: counters since start and its lag (:class:`ConsumerMetrics`), published by
:class:`SnapshotPublisher`.

The snapshot is the log line's ``metrics`` and the ``metrics:consumer:<host>-<pid>`` Redis key
(:func:`cryptoproject.kafka_offsets.consumer_metrics_key`) that ``/healthz`` and the health page read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from analytics.storage import StoreResult
from cryptoproject.kafka_offsets import METRICS_TTL_SECONDS, consumer_metrics_key
from cryptoproject.redis_clients import redis_client

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


class SnapshotPublisher:
    """Writes a member's snapshot to the log and to Redis under ``metrics:consumer:<member>``; a Redis failure is
    logged, never raised (metrics must not stop the worker)."""

    def __init__(self, member: str, client: Callable[[], redis.Redis] = redis_client) -> None:
        self.key = consumer_metrics_key(member)
        self._client_factory = client
        self._client: redis.Redis | None = None

    def publish(self, snapshot: dict[str, Any]) -> bool:
        """Log ``snapshot`` and store it for :data:`METRICS_TTL_SECONDS`; False when Redis refused it."""
        logger.info("consumer metrics", extra={"metrics": snapshot})
        try:
            if self._client is None:
                self._client = self._client_factory()
            self._client.set(self.key, orjson.dumps(snapshot), ex=METRICS_TTL_SECONDS)
        except redis.RedisError:
            logger.warning("metrics snapshot not written to Redis", exc_info=True)
            return False
        return True
