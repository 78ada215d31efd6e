"""The tuning of one trades consumer (:class:`ConsumerConfig`), from the ``CONSUMER_*`` settings or by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from analytics.dlq import DlqLimit
from ingest.records import DEFAULT_DLQ_RAW_MAX_BYTES


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
