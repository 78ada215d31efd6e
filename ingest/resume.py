"""Where a restarted ingest resumes: the last trade id per symbol that Kafka already holds.

A process that dies (SIGKILL, OOM, a host lost) forgets the last id it saw, and a new one would start from
wherever the exchange's stream is: the trades printed while it was down, and those it had received but not yet
published, would be lost for good. Kafka is the durable record of what ingest published, so at start ingest reads
the tail of each symbol's partition, finds the newest trade id of each symbol it serves, and seeds its gap tracker
with it; the first live trade then shows the gap, and REST backfill (where the exchange has it) fetches it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import orjson
from django.conf import settings
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from cryptoproject.kafka import client_config

logger = logging.getLogger(__name__)

#: records read backwards per step, and at most per partition: a symbol silent for longer than that is not seeded
CHUNK = 2000
SCAN_LIMIT = 200_000


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (and :class:`ingest.producer.TradeProducer`) picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def last_published_ids(
    exchange: str, symbols: Iterable[str], topic: str | None = None, scan_limit: int = SCAN_LIMIT
) -> dict[str, int]:
    """The newest trade id of each of ``symbols`` (the exchange's spelling) on the trades topic.

    Reads each partition involved backwards from its end, ``CHUNK`` records at a time, until every symbol on it was
    found or ``scan_limit`` records were read. Symbols never published are absent from the result.
    """
    topic = topic or settings.KAFKA_TRADES_TOPIC
    wanted = {f"{exchange}:{s}".encode(): s for s in symbols}
    consumer = KafkaConsumer(**client_config(), enable_auto_commit=False, group_id=None, consumer_timeout_ms=2000)
    found: dict[str, int] = {}
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return found
        by_partition: dict[int, set[bytes]] = {}
        for key in wanted:
            by_partition.setdefault(partition_for(key, len(partitions)), set()).add(key)
        for partition, keys in by_partition.items():
            found.update(_scan(consumer, TopicPartition(topic, partition), keys, wanted, scan_limit))
    finally:
        consumer.close()
    if found:
        logger.info("resuming after the last published trades", extra={"last_ids": found})
    return found


def _scan(
    consumer: KafkaConsumer, tp: TopicPartition, keys: set[bytes], names: dict[bytes, str], scan_limit: int
) -> dict[str, int]:
    consumer.assign([tp])
    begin = consumer.beginning_offsets([tp])[tp]
    end = consumer.end_offsets([tp])[tp]
    found: dict[str, int] = {}
    stop = end
    while stop > begin and end - stop < scan_limit and len(found) < len(keys):
        start = max(begin, stop - CHUNK)
        consumer.seek(tp, start)
        newest: dict[str, int] = {}
        while consumer.position(tp) < stop:
            batch = consumer.poll(timeout_ms=2000, max_records=CHUNK)
            if not batch:
                break
            for message in batch.get(tp, []):
                if message.offset >= stop:
                    break
                name = names.get(message.key) if message.key in keys else None
                if name is None or name in found:
                    continue
                trade_id = _trade_id(message.value)
                if trade_id is not None and trade_id > newest.get(name, -1):
                    newest[name] = trade_id
        found.update(newest)
        stop = start
    return found


def _trade_id(value: bytes | None) -> int | None:
    try:
        data = orjson.loads(value or b"")
        trade_id = data["trade_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return trade_id if isinstance(trade_id, int) and not isinstance(trade_id, bool) else None
