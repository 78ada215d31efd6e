"""The books consumer's store step: one transaction per batch, one statement per table (never one per row).

Both series are upserts on their natural keys that only move a row forward in the topic: a row is replaced only by
one made from a later message (``source_offset``). Replaying messages (a restart re-reads from a snapshot before
the committed offset) therefore rewrites nothing that is newer, and a row made at the end of a batch from a window
still open is replaced once the window has filled. The batch's replay checkpoints go in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from django.db import connection, transaction

from books.keeper import MetricRow, SnapshotRow

METRIC_FIELDS = (
    "best_bid",
    "best_ask",
    "spread",
    "mid",
    "bid_depth_10bps",
    "ask_depth_10bps",
    "bid_depth_1pct",
    "ask_depth_1pct",
    "imbalance",
)
_UPSERT_METRICS = f"""
INSERT INTO books_bookmetric (exchange, symbol, second, t, last_id, valid, {", ".join(METRIC_FIELDS)}, source_offset)
SELECT * FROM unnest(
    %s::varchar[], %s::varchar[], %s::timestamptz[], %s::bigint[], %s::bigint[], %s::boolean[],
    {", ".join(["%s::numeric[]"] * len(METRIC_FIELDS))}, %s::bigint[]
)
ON CONFLICT (exchange, symbol, second) DO UPDATE SET
    t = EXCLUDED.t, last_id = EXCLUDED.last_id, valid = EXCLUDED.valid,
    {", ".join(f"{name} = EXCLUDED.{name}" for name in METRIC_FIELDS)}, source_offset = EXCLUDED.source_offset
WHERE books_bookmetric.source_offset < EXCLUDED.source_offset
"""
_UPSERT_SNAPSHOTS = """
INSERT INTO books_booksnapshot (exchange, symbol, window_start, t, last_id, valid, bids, asks, source_offset)
SELECT * FROM unnest(
    %s::varchar[], %s::varchar[], %s::timestamptz[], %s::bigint[], %s::bigint[], %s::boolean[],
    %s::text[]::jsonb[], %s::text[]::jsonb[], %s::bigint[]
)
ON CONFLICT (exchange, symbol, window_start) DO UPDATE SET
    t = EXCLUDED.t, last_id = EXCLUDED.last_id, valid = EXCLUDED.valid, bids = EXCLUDED.bids, asks = EXCLUDED.asks,
    source_offset = EXCLUDED.source_offset
WHERE books_booksnapshot.source_offset < EXCLUDED.source_offset
"""
_CHECKPOINTS = """
INSERT INTO books_replaycheckpoint ("group", topic, partition, through, replay_from)
SELECT %s, %s, * FROM unnest(%s::integer[], %s::bigint[], %s::bigint[])
ON CONFLICT DO NOTHING
"""
#: checkpoints kept per partition (a restart needs the newest at or before the committed offset)
KEEP_CHECKPOINTS = 100
_PRUNE = """
DELETE FROM books_replaycheckpoint c
WHERE c."group" = %(group)s AND c.topic = %(topic)s AND c.partition = ANY(%(partitions)s) AND c.through < (
    SELECT min(k.through) FROM (
        SELECT through FROM books_replaycheckpoint
        WHERE "group" = c."group" AND topic = c.topic AND partition = c.partition
        ORDER BY through DESC LIMIT %(keep)s
    ) k
)
"""
_REPLAY_FROM = """
SELECT replay_from FROM books_replaycheckpoint
WHERE "group" = %s AND topic = %s AND partition = %s AND through <= %s
ORDER BY through DESC LIMIT 1
"""


@dataclass(frozen=True)
class Checkpoint:
    """After a batch: partition ``partition`` is read up to ``through`` (exclusive), and its books can be rebuilt by
    re-reading from ``replay_from``."""

    partition: int
    through: int
    replay_from: int


@dataclass(frozen=True)
class StoreCounts:
    """Rows written (inserted or moved forward) by one batch."""

    metrics: int
    snapshots: int


def store(
    metrics: Sequence[MetricRow],
    snapshots: Sequence[SnapshotRow],
    checkpoints: Sequence[Checkpoint],
    group: str,
    topic: str,
) -> StoreCounts:
    """Write one batch's rows and checkpoints in one transaction."""
    written_metrics = written_snapshots = 0
    with transaction.atomic(), connection.cursor() as cur:
        if metrics:
            values = [[getattr(r.metrics, name) if r.metrics else None for r in metrics] for name in METRIC_FIELDS]
            cur.execute(
                _UPSERT_METRICS,
                [
                    [r.exchange for r in metrics],
                    [r.symbol for r in metrics],
                    [r.second_at for r in metrics],
                    [r.t for r in metrics],
                    [r.last_id for r in metrics],
                    [r.valid for r in metrics],
                    *values,
                    [r.source_offset for r in metrics],
                ],
            )
            written_metrics = cur.rowcount
        if snapshots:
            cur.execute(
                _UPSERT_SNAPSHOTS,
                [
                    [r.exchange for r in snapshots],
                    [r.symbol for r in snapshots],
                    [r.window_at for r in snapshots],
                    [r.t for r in snapshots],
                    [r.last_id for r in snapshots],
                    [r.valid for r in snapshots],
                    [orjson.dumps(r.bids).decode() for r in snapshots],
                    [orjson.dumps(r.asks).decode() for r in snapshots],
                    [r.source_offset for r in snapshots],
                ],
            )
            written_snapshots = cur.rowcount
        if checkpoints:
            cur.execute(
                _CHECKPOINTS,
                [
                    group,
                    topic,
                    [c.partition for c in checkpoints],
                    [c.through for c in checkpoints],
                    [c.replay_from for c in checkpoints],
                ],
            )
            cur.execute(
                _PRUNE,
                {
                    "group": group,
                    "topic": topic,
                    "partitions": [c.partition for c in checkpoints],
                    "keep": KEEP_CHECKPOINTS,
                },
            )
    return StoreCounts(written_metrics, written_snapshots)


def replay_from(group: str, topic: str, partition: int, committed: int) -> int | None:
    """Where to re-read ``partition`` from to rebuild its books as they stood at the ``committed`` offset: the
    newest checkpoint at or before it, or None when there is none (the caller re-reads from the beginning)."""
    with connection.cursor() as cur:
        cur.execute(_REPLAY_FROM, [group, topic, partition, committed])
        row = cur.fetchone()
    return None if row is None else int(row[0])
