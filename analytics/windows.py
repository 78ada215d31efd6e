"""What storing a batch produces and dispatching consumes: the trades of one symbol in one batch.

A plain dataclass without Django imports, so the consumer, storage and dispatch share it before the apps are ready.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SymbolWindow:
    """The trades of one symbol in one stored batch: traded_at range [start_ms, end_ms] (epoch ms)."""

    exchange: str
    symbol: str
    start_ms: int
    end_ms: int
    count: int
