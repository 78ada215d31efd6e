"""Delivering a batch: store -> fan-out -> dead letters -> commit, in that order, each step injected.

Offsets are committed only once the store, the fan-out and the dead letters succeeded, so a failure at any point
re-reads the batch: the unique key makes the re-stored rows no-ops and the windows are dispatched again (idempotent
tasks). A failing step raises and the steps after it do not run; the loop keeps the batch and retries it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from kafka import TopicPartition

from analytics.consumer.batch import Batch
from analytics.consumer.dead_letters import Letter, LetterId
from analytics.consumer.metrics import ConsumerMetrics
from analytics.consumer.store import Stored
from analytics.windows import SymbolWindow
from ingest.records import TradeRecord


class Delivery:
    """The steps after batching, wired in order; ``metrics`` accounts for each delivered batch."""

    def __init__(
        self,
        store: Callable[[list[TradeRecord], list[tuple[int, int]]], Stored],
        fanout: Callable[[list[TradeRecord], list[SymbolWindow]], None],
        dead_letters: Callable[[list[Letter], set[LetterId], set[LetterId]], None],
        commit: Callable[[Mapping[TopicPartition, int]], None],
        metrics: ConsumerMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.fanout, self.dead_letters, self.commit = store, fanout, dead_letters, commit
        self.metrics, self.clock = metrics, clock

    def __call__(self, batch: Batch) -> None:
        """Deliver ``batch``; raises whatever a step raises (nothing is committed then)."""
        stored = self.store(batch.records, batch.origins)
        # Only what was stored goes to the live tape: a record PostgreSQL refused (a price of 1e999999 passes the
        # decoder but no numeric(30, 12) column) is a dead letter, never a trade on the page.
        self.fanout(stored.kept(batch.records), stored.result.windows)
        # Letters the topic acknowledged are added to batch.dead_acked: a retry does not send them again.
        self.dead_letters(batch.dead + stored.refused, batch.dead_acked, batch.dead_oversized)
        self.commit(batch.offsets)
        self.metrics.record_batch(stored.result, stored.seconds, self.clock() - batch.started)
        self.metrics.dead_lettered += len(batch.dead) + len(stored.refused)
