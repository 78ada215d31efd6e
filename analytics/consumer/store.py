"""The consumer's store step: a batch's trades in one PostgreSQL transaction, idempotently
(:func:`analytics.storage.store_isolating`); the records PostgreSQL refuses become dead letters, the rest is stored.

What it returns is durable: the trades (new or duplicates) and their per-symbol windows. Infrastructure failures
(PostgreSQL unreachable, the statement timeout) raise and store nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from analytics.consumer.dead_letters import Letter
from analytics.storage import StoreResult, store_isolating
from ingest.records import DeadLetter, TradeRecord, bounded_raw

logger = logging.getLogger(__name__)

#: ``store_isolating``'s shape: (records, statement timeout) -> (result, [(index, reason)] of refused records)
Storer = Callable[[Sequence[TradeRecord], int | None], tuple[StoreResult, list[tuple[int, str]]]]


@dataclass(frozen=True)
class Stored:
    """What the store step made durable, the letters of the records PostgreSQL refused, and how long it took."""

    result: StoreResult
    refused: list[Letter] = field(default_factory=list)
    seconds: float = 0.0
    #: the indexes (in the batch) of the records PostgreSQL refused: they are not stored, so not shown either
    refused_at: frozenset[int] = frozenset()

    def kept(self, records: list[TradeRecord]) -> list[TradeRecord]:
        """``records`` without those PostgreSQL refused: what the batch made durable, in batch order."""
        if not self.refused_at:
            return records
        return [record for index, record in enumerate(records) if index not in self.refused_at]


class Store:
    """Stores trades read from ``topic``; refused records become letters from ``source``."""

    def __init__(
        self,
        source: str,
        topic: str,
        raw_max_bytes: int,
        statement_timeout_ms: int | None,
        storer: Storer = store_isolating,
    ) -> None:
        self.source, self.topic, self.raw_max_bytes = source, topic, raw_max_bytes
        self.statement_timeout_ms, self.storer = statement_timeout_ms, storer

    def __call__(self, records: list[TradeRecord], origins: list[tuple[int, int]]) -> Stored:
        """Store ``records``; ``origins`` holds each record's (partition, offset), for its letter if refused."""
        t0 = time.perf_counter()
        result, refused = self.storer(records, self.statement_timeout_ms)
        seconds = time.perf_counter() - t0
        letters: list[Letter] = []
        for index, reason in refused:
            record, (partition, offset) = records[index], origins[index]
            raw, length = bounded_raw(record.encode(), self.raw_max_bytes)
            letter = DeadLetter(
                source=self.source,
                reason=reason,
                raw=raw,
                raw_length=length,
                received_at=int(time.time() * 1000),
                topic=self.topic,
                partition=partition,
                offset=offset,
            )
            logger.warning("record refused by the database", extra={"reason": reason, "offset": offset})
            letters.append((record.key, letter))
        return Stored(result, letters, seconds, frozenset(index for index, _ in refused))
