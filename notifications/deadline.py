"""An attempt's total deadline (below the channels, so the resolver and the SSRF guard can keep it too; re-exported
by :mod:`notifications.channels.base`)."""

from __future__ import annotations

import time
from dataclasses import dataclass


class DeadlineExceededError(TimeoutError):
    """The attempt's total deadline passed (connect + send + read together)."""


@dataclass(frozen=True)
class Deadline:
    """An absolute point on the monotonic clock by which an attempt must be over."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left; raises :class:`DeadlineExceededError` when none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise DeadlineExceededError("the attempt's deadline passed")
        return left
