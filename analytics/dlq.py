"""The invalid-message limit of the trades consumer, in the manner of arroyo's ``DlqLimit``.

A bad record goes to the dead-letter topic and the worker goes on: that is bad data. Many bad records are a bug (a
schema change, a producer writing to the wrong topic): dead-lettering them all would empty the topic into the DLQ
and hide the bug, so past a limit the worker stops without committing and the records wait for a fix.

The limit is per partition (one bad producer key does not condemn the others), in two parts:

- a ratio over a sliding window: more than ``max_invalid_ratio`` of the partition's last ``window`` records
  invalid, judged once the window holds ``min_records`` records (the first records alone prove nothing);
- a cap on consecutive invalid records (``max_consecutive``), which trips even when the window is still short.

The consumer's decode step (:mod:`analytics.consumer.decode`) counts every record here; its dead-letter step is
:mod:`analytics.consumer.dead_letters`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field


class InvalidMessageLimitError(RuntimeError):
    """Too many invalid records on one partition: a bug upstream, not bad data, so the worker stops."""


@dataclass(frozen=True)
class DlqLimit:
    """How many invalid records a partition may carry before the worker stops (``None`` disables a part)."""

    max_invalid_ratio: float | None = 0.5
    window: int = 1000
    min_records: int = 100
    max_consecutive: int | None = 1000

    def __post_init__(self) -> None:
        if self.max_invalid_ratio is not None and not 0 < self.max_invalid_ratio <= 1:
            raise ValueError("max_invalid_ratio must be in (0, 1]")
        if self.window < 1:
            raise ValueError("window must be at least 1")
        if not 1 <= self.min_records <= self.window:
            raise ValueError("min_records must be between 1 and window")
        if self.max_consecutive is not None and self.max_consecutive < 1:
            raise ValueError("max_consecutive must be at least 1")


@dataclass
class _PartitionState:
    outcomes: deque[bool]  # True for an invalid record, oldest first
    invalid: int = 0
    consecutive: int = 0


@dataclass
class InvalidMessageLimiter:
    """Counts valid and invalid records per partition and raises once :class:`DlqLimit` is exceeded."""

    limit: DlqLimit = field(default_factory=DlqLimit)
    _states: dict[int, _PartitionState] = field(default_factory=dict, init=False)

    def _state(self, partition: int) -> _PartitionState:
        state = self._states.get(partition)
        if state is None:
            state = self._states[partition] = _PartitionState(deque(maxlen=self.limit.window))
        return state

    def valid(self, partition: int, count: int = 1) -> None:
        """Account for ``count`` valid records in a row."""
        if count <= 0:
            return
        state = self._state(partition)
        state.consecutive = 0
        outcomes = state.outcomes
        window = self.limit.window
        if count >= window:
            outcomes.clear()
            outcomes.extend([False] * window)
            state.invalid = 0
            return
        for _ in range(count):
            if len(outcomes) == window and outcomes[0]:
                state.invalid -= 1
            outcomes.append(False)

    def invalid(self, partition: int, offset: int, reason: str) -> None:
        """Account for one invalid record; raise :class:`InvalidMessageLimitError` when the limit is exceeded."""
        state = self._state(partition)
        outcomes = state.outcomes
        if len(outcomes) == self.limit.window and outcomes[0]:
            state.invalid -= 1
        outcomes.append(True)
        state.invalid += 1
        state.consecutive += 1
        limit = self.limit
        if limit.max_consecutive is not None and state.consecutive > limit.max_consecutive:
            raise InvalidMessageLimitError(
                f"{state.consecutive} consecutive invalid records on partition {partition} (up to offset {offset}, "
                f"limit {limit.max_consecutive}; last reason: {reason[:200]}): this is a bug upstream, not bad "
                "data; stopping without committing"
            )
        seen = len(outcomes)
        ratio = limit.max_invalid_ratio
        if ratio is not None and seen >= limit.min_records and state.invalid > ratio * seen:
            raise InvalidMessageLimitError(
                f"{state.invalid} of the last {seen} records on partition {partition} are invalid (up to offset "
                f"{offset}, limit {ratio:.0%}; last reason: {reason[:200]}): this is a bug upstream, not bad data; "
                "stopping without committing"
            )

    def retain(self, partitions: Iterable[int]) -> None:
        """Forget the partitions this member no longer owns (a later owner starts its own count)."""
        keep = set(partitions)
        for partition in [p for p in self._states if p not in keep]:
            del self._states[partition]

    def counts(self, partition: int) -> tuple[int, int, int]:
        """(records in the window, invalid in the window, consecutive invalid) of one partition."""
        state = self._states.get(partition)
        if state is None:
            return 0, 0, 0
        return len(state.outcomes), state.invalid, state.consecutive
