"""The consumer's commit step: the next offset of every partition of a durable batch, never before.

A commit the group refuses because it is rebalancing is not an infrastructure failure: the batch is already stored
and its tasks dispatched. Retrying it (and pausing) would keep the member from completing the rejoin, which only
``poll()`` does, so the offsets are remembered instead. They go with the next batch's commit (newer offsets win) or,
on an idle topic, with :meth:`Commit.leftovers` once the rebalance is over (else the group's lag would stay above
zero for good and ``/healthz`` would call the group stalled). The offsets of partitions the member loses are
forgotten (:meth:`Commit.retain`): their next owner re-reads from the last commit (the rows are no-ops).

Other failures raise: the loop retries the whole batch. A batch is committed as soon as it is durable (one commit
per batch, as before the steps were split out); the loop delivers at most one batch per ``batch_ms``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping

from kafka import TopicPartition
from kafka.errors import RebalanceInProgressError

from analytics.consumer.errors import REBALANCE_ERRORS, TRANSIENT_ERRORS
from analytics.consumer.metrics import ConsumerMetrics

logger = logging.getLogger(__name__)

#: retry delay of offsets a rebalance or a transient failure refused
RETRY_S = 1.0


class Commit:
    """Commits offsets through ``commit``; ``rebalancing`` says whether the group is rebalancing right now.

    ``on_committed`` is told of each successful commit (the watchdog's progress); ``metrics.commits_skipped`` counts
    the commits a rebalance refused.
    """

    def __init__(
        self,
        commit: Callable[[Mapping[TopicPartition, int]], None],
        rebalancing: Callable[[], bool],
        metrics: ConsumerMetrics,
        on_committed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.commit, self.rebalancing, self.metrics = commit, rebalancing, metrics
        self.on_committed, self.clock = on_committed, clock
        self.pending: dict[TopicPartition, int] = {}  # offsets a rebalance refused, committed with the next ones
        self.retry_at = 0.0

    def __call__(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` and any refused before; remembered (not raised) when the group is rebalancing."""
        merged = {**self.pending, **offsets}
        if not merged:
            return
        try:
            if self.rebalancing():
                # Asking anyway makes kafka-python refuse and can leave the member's rejoin hanging (seen in tests).
                raise RebalanceInProgressError("the group is rebalancing")
            self.commit(merged)
            self.pending = {}
            self.on_committed()
        except REBALANCE_ERRORS as exc:
            self.pending = merged
            self.retry_at = self.clock() + RETRY_S
            self.metrics.commits_skipped += 1
            logger.info(
                "offset commit skipped during a rebalance; the batch is stored",
                extra={"error": type(exc).__name__, "partitions": sorted(tp.partition for tp in merged)},
            )

    def leftovers_due(self) -> bool:
        """Whether refused offsets wait and their retry time has come."""
        return bool(self.pending) and self.clock() >= self.retry_at

    def leftovers(self) -> None:
        """Commit the offsets a rebalance refused (nothing else to commit them with); failures wait a second."""
        try:
            self({})
        except TRANSIENT_ERRORS as exc:
            self.retry_at = self.clock() + RETRY_S
            logger.warning("offset commit failed, retrying", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})

    def retain(self, assigned: Collection[TopicPartition]) -> None:
        """Forget the refused offsets of partitions this member no longer owns."""
        self.pending = {tp: o for tp, o in self.pending.items() if tp in assigned}
