"""Liveness of a trades-consumer member: is it making progress, and if not, for how long?

A member can sit in its group without doing anything useful while looking alive: kafka-python can leave it without
partitions after a back-to-back rejoin, and a store that never succeeds keeps its partitions paused. Both look like
a healthy process to a supervisor. The watchdog turns them into a verdict the worker acts on (it exits non-zero and
its supervisor restarts it, which also makes the group rebalance) and that ``/healthz`` reads from the published
snapshot:

- a member WITH partitions is stalled when records wait (lag, or a batch in flight) and it has made no commit
  progress for longer than the bound;
- a member WITHOUT partitions is stalled when it has had none for longer than the bound while the group has records
  waiting and made no commit progress either (an extra member, beyond the partition count, is idle, not stalled).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class StalledError(RuntimeError):
    """The member made no progress for longer than its bound; the worker exits for its supervisor to restart it."""


class Watchdog:
    """Tracks progress of one member; :meth:`verdict` says why it is stalled, ``None`` while it is not."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self._clock = clock
        now = clock()
        self.assigned = 0
        self.pending = 0
        self.group_lag: int | None = None
        self._unassigned_since: float | None = now
        self._progress_at = now
        self._group_progress_at = now
        self._group_committed: dict[int, int | None] | None = None
        self._last_commit_wall: float | None = None

    def observe(self, assigned: int, pending: int) -> None:
        """Called every loop turn: partitions owned and records waiting (lag plus the batch in flight)."""
        now = self._clock()
        if assigned and not self.assigned:
            self._unassigned_since = None
            self._progress_at = now  # a fresh assignment starts a fresh bound
        elif not assigned and self.assigned:
            self._unassigned_since = now
            self._group_progress_at = now
            self._group_committed = None
        self.assigned = assigned
        self.pending = pending
        if assigned and not pending:
            self._progress_at = now

    def unassigned_for(self) -> float:
        """Seconds this member has been without partitions (0 while it has some)."""
        return 0.0 if self._unassigned_since is None else self._clock() - self._unassigned_since

    def committed(self) -> None:
        """An offset commit succeeded: progress."""
        self._progress_at = self._clock()
        self._last_commit_wall = time.time()

    def observe_group(self, committed: dict[int, int | None], lag: int) -> None:
        """While unassigned: the group's committed offsets per partition (``None``: never committed) and its total lag
        (:mod:`cryptoproject.kafka_offsets`), sampled now and then."""
        now = self._clock()
        if lag == 0 or (self._group_committed is not None and committed != self._group_committed):
            self._group_progress_at = now
        self._group_committed = dict(committed)
        self.group_lag = lag

    def verdict(self) -> str | None:
        """Why this member is stalled, or ``None``."""
        now = self._clock()
        bound = self.timeout_s
        if self.assigned:
            idle = now - self._progress_at
            if self.pending and idle > bound:
                return (
                    f"no commit progress for {idle:.0f} s with {self.pending} records waiting on "
                    f"{self.assigned} partitions (bound {bound:g} s)"
                )
            return None
        if self._unassigned_since is None:  # pragma: no cover - observe() keeps the two in step
            return None
        unassigned = now - self._unassigned_since
        group_idle = now - self._group_progress_at
        if unassigned > bound and group_idle > bound and self.group_lag != 0:
            waiting = "an unknown number of" if self.group_lag is None else str(self.group_lag)
            return (
                f"no partitions assigned for {unassigned:.0f} s while the group has {waiting} records waiting and "
                f"made no commit progress for {group_idle:.0f} s (bound {bound:g} s)"
            )
        return None

    def snapshot(self) -> dict[str, Any]:
        """The liveness figures of the metrics snapshot (read by ``dashboard.health``)."""
        now = self._clock()
        stalled_for = 0.0
        if self.assigned and self.pending:
            stalled_for = now - self._progress_at
        elif not self.assigned and self._unassigned_since is not None and self.group_lag != 0:
            stalled_for = min(now - self._unassigned_since, now - self._group_progress_at)
        return {
            "assigned_partitions": self.assigned,
            "pending_records": self.pending,
            "last_commit_at": int(self._last_commit_wall * 1000) if self._last_commit_wall else None,
            "no_progress_s": round(stalled_for, 1),
            "stall_timeout_s": self.timeout_s,
            "stalled": self.verdict() is not None,
        }
