"""Where a restarted ingest resumes: the last trade id per symbol that Kafka already holds, and the holes below it.

A process that dies (SIGKILL, OOM, a host lost) forgets the last id it saw, and a new one would start from
wherever the exchange's stream is: the trades printed while it was down, and those it had received but not yet
published, would be lost for good. Kafka is the durable record of what ingest published, so at start ingest reads
the tail of each symbol's partition: the newest trade id seeds its gap tracker (the first live trade then shows the
gap, and REST backfill fetches it), and ids missing among the recent ones (a gap whose backfill was still running,
a batch the dead process never got acknowledged while later ones were) are backfilled too.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from django.conf import settings
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from cryptoproject.kafka import client_config

logger = logging.getLogger(__name__)

#: records read backwards per step, and at most per partition: a symbol silent for longer than that is not seeded
CHUNK = 2000
SCAN_LIMIT = 200_000
#: the newest ids per symbol searched for holes
WINDOW = 20_000


@dataclass
class ResumePoint:
    """The newest id of a symbol on the topic, the ranges missing among its recent ids (first, last), and the
    trade times (epoch ms) of the trades just before them (``last_id`` and each hole's ``first - 1``): REST that
    pages by time (Kraken) starts there."""

    last_id: int
    holes: list[tuple[int, int]] = field(default_factory=list)
    times: dict[int, int] = field(default_factory=dict)


def resume_point(trades: dict[int, int | None]) -> ResumePoint:
    """The point of a symbol whose trades on the topic are ``{trade id: trade time (None if unreadable)}``."""
    last_id = max(trades)
    gaps = holes(trades)
    wanted = [last_id, *(first - 1 for first, _last in gaps)]
    return ResumePoint(last_id, gaps, {i: t for i in wanted if (t := trades[i]) is not None})


def holes(ids: Iterable[int]) -> list[tuple[int, int]]:
    """The ranges missing between the smallest and the largest of ``ids``."""
    ordered = sorted(set(ids))
    return [(a + 1, b - 1) for a, b in itertools.pairwise(ordered) if b > a + 1]


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (and :class:`ingest.producer.TradeProducer`) picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def last_published_ids(
    exchange: str, symbols: Iterable[str], topic: str | None = None, scan_limit: int = SCAN_LIMIT
) -> dict[str, int]:
    """The newest trade id of each of ``symbols`` on the trades topic (see :func:`resume_points`)."""
    return {name: point.last_id for name, point in resume_points(exchange, symbols, topic, scan_limit).items()}


def resume_points(
    exchange: str,
    symbols: Iterable[str],
    topic: str | None = None,
    scan_limit: int = SCAN_LIMIT,
    window: int = WINDOW,
) -> dict[str, ResumePoint]:
    """Per symbol (the exchange's spelling): its newest trade id on the trades topic and the holes among its newest
    ``window`` ids.

    Reads each partition involved backwards from its end, ``CHUNK`` records at a time, until ``window`` ids of every
    symbol on it were seen or ``scan_limit`` records were read. Symbols never published are absent from the result.
    """
    topic = topic or settings.KAFKA_TRADES_TOPIC
    wanted = {f"{exchange}:{s}".encode(): s for s in symbols}
    consumer = KafkaConsumer(**client_config(), enable_auto_commit=False, group_id=None, consumer_timeout_ms=2000)
    ids: dict[str, dict[int, int | None]] = {}
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return {}
        by_partition: dict[int, set[bytes]] = {}
        for key in wanted:
            by_partition.setdefault(partition_for(key, len(partitions)), set()).add(key)
        for partition, keys in by_partition.items():
            ids.update(_scan(consumer, TopicPartition(topic, partition), keys, wanted, scan_limit, window))
    finally:
        consumer.close()
    points = {name: resume_point(found) for name, found in ids.items() if found}
    if points:
        logger.info(
            "resuming after the last published trades",
            extra={
                "last_ids": {n: p.last_id for n, p in points.items()},
                "holes": {n: p.holes for n, p in points.items()},
            },
        )
    return points


def _scan(
    consumer: KafkaConsumer,
    tp: TopicPartition,
    keys: set[bytes],
    names: dict[bytes, str],
    scan_limit: int,
    window: int,
) -> dict[str, dict[int, int | None]]:
    consumer.assign([tp])
    begin = consumer.beginning_offsets([tp])[tp]
    end = consumer.end_offsets([tp])[tp]
    found: dict[str, dict[int, int | None]] = {}
    stop = end

    def done() -> bool:
        return len(found) == len(keys) and all(len(v) >= window for v in found.values())

    while stop > begin and end - stop < scan_limit and not done():
        start = max(begin, stop - CHUNK)
        consumer.seek(tp, start)
        while consumer.position(tp) < stop:
            batch = consumer.poll(timeout_ms=2000, max_records=CHUNK)
            if not batch:
                break
            for message in batch.get(tp, []):
                if message.offset >= stop:
                    break
                if message.key not in keys:
                    continue
                trade = _trade_id_time(message.value)
                if trade is not None:
                    found.setdefault(names[message.key], {})[trade[0]] = trade[1]
        stop = start
    return found


def _trade_id_time(value: bytes | None) -> tuple[int, int | None] | None:
    try:
        data = orjson.loads(value or b"")
        trade_id = data["trade_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if type(trade_id) is not int:
        return None
    trade_time = data.get("trade_time")
    return trade_id, trade_time if type(trade_time) is int else None
