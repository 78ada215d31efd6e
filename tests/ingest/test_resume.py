"""A restarted ingest resumes after the last trade id Kafka holds per symbol (real broker)."""

from __future__ import annotations

import orjson
import pytest
from kafka import KafkaProducer

from cryptoproject.kafka import client_config
from ingest import resume
from ingest.resume import last_published_ids, partition_for

pytestmark = pytest.mark.integration


def _produce(topic: str, records: list[tuple[str, int]]) -> None:
    producer = KafkaProducer(**client_config(), acks="all")
    try:
        for symbol, trade_id in records:
            key = f"binance:{symbol}".encode()
            producer.send(topic, key=key, value=orjson.dumps({"trade_id": trade_id}), partition=partition_for(key, 6))
        producer.flush(30)
    finally:
        producer.close()


def test_last_ids_per_symbol_from_the_tail_of_their_partitions(kafka_topics, monkeypatch):
    monkeypatch.setattr(resume, "CHUNK", 50)  # several backward steps on a small topic
    # BTCUSDT's last trade sits behind 300 newer records of other symbols (some on its partition).
    others = [(f"S{i % 40}USDT", 10_000 + i) for i in range(300)]
    _produce(kafka_topics.trades, [("BTCUSDT", 5), ("BTCUSDT", 7), ("ETHUSDT", 3), ("BTCUSDT", 6), *others])
    ids = last_published_ids("binance", ["BTCUSDT", "ETHUSDT", "NEVERUSDT"], topic=kafka_topics.trades)
    assert ids == {"BTCUSDT": 7, "ETHUSDT": 3}


def test_scan_limit_bounds_the_search(kafka_topics, monkeypatch):
    monkeypatch.setattr(resume, "CHUNK", 10)
    key = b"binance:BTCUSDT"
    crowd = [
        s
        for s in (f"X{i}USDT" for i in range(500))
        if partition_for(f"binance:{s}".encode(), 6) == partition_for(key, 6)
    ]
    _produce(kafka_topics.trades, [("BTCUSDT", 1), *[(s, 2) for s in crowd[:40]]])
    assert last_published_ids("binance", ["BTCUSDT"], topic=kafka_topics.trades, scan_limit=20) == {}
    assert last_published_ids("binance", ["BTCUSDT"], topic=kafka_topics.trades) == {"BTCUSDT": 1}


def test_records_without_an_integer_id_are_skipped(kafka_topics):
    producer = KafkaProducer(**client_config(), acks="all")
    key = b"binance:BTCUSDT"
    for value in (orjson.dumps({"trade_id": 41}), b"not json", orjson.dumps({"trade_id": "x"}), orjson.dumps([1])):
        producer.send(kafka_topics.trades, key=key, value=value, partition=partition_for(key, 6))
    producer.flush(30)
    producer.close()
    assert last_published_ids("binance", ["BTCUSDT"], topic=kafka_topics.trades) == {"BTCUSDT": 41}


def test_resume_points_carry_the_times_before_the_holes(kafka_topics):
    producer = KafkaProducer(**client_config(), acks="all")
    key = b"kraken:BTC/USD"
    for trade_id in (10, 11, 14, 15, 18):
        value = orjson.dumps({"trade_id": trade_id, "trade_time": 1_700_000_000_000 + trade_id})
        producer.send(kafka_topics.trades, key=key, value=value, partition=partition_for(key, 6))
    producer.flush(30)
    producer.close()
    (point,) = resume.resume_points("kraken", ["BTC/USD"], topic=kafka_topics.trades).values()
    assert (point.last_id, point.holes) == (18, [(12, 13), (16, 17)])
    # Kraken's REST pages by time: each hole is fetched from the time of the trade before it.
    assert point.times == {18: 1_700_000_000_018, 11: 1_700_000_000_011, 15: 1_700_000_000_015}


def test_a_missing_topic_resumes_nothing(settings):
    assert last_published_ids("binance", ["BTCUSDT"], topic="no.such.topic.resume") == {}
