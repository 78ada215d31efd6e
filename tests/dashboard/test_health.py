"""Pipeline health against the real Kafka, Redis and PostgreSQL: lag per partition, DLQ size, ingest and consumer
snapshots, queue depths, last trade age per symbol, and graceful answers when a server is unreachable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from cryptoproject.kafka import admin_client, client_config
from cryptoproject.kafka_offsets import committed_by_member, group_lag, topic_partitions
from dashboard import health
from tests.conftest import KafkaTopics, unique, wait_for
from tests.dashboard.api_factories import T0, locmem_cache, make_stats, make_trades

__all__ = ["locmem_cache"]


@pytest.fixture(autouse=True)
def _fresh_health_cache() -> Iterator[None]:
    health.clear_cache()
    yield
    health.clear_cache()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    yield client
    for key in client.scan_iter(match="metrics:*"):
        client.delete(key)
    client.close()


def produce(topic: str, per_partition: dict[int, int]) -> None:
    producer = KafkaProducer(**client_config(), acks="all")
    try:
        for partition, count in per_partition.items():
            for i in range(count):
                producer.send(topic, value=f'{{"n": {i}}}'.encode(), partition=partition)
        producer.flush(timeout=30)
    finally:
        producer.close()


def commit(group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = KafkaConsumer(**client_config(), group_id=group, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, p) for p in offsets])
        consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
    finally:
        consumer.close()


@pytest.mark.integration
def test_consumer_lag_per_partition_and_dlq_count(kafka_topics: KafkaTopics) -> None:
    produce(kafka_topics.trades, {0: 10, 1: 4, 2: 7})
    produce(kafka_topics.dlq, {0: 3})
    commit(kafka_topics.group, kafka_topics.trades, {0: 6, 1: 4})

    lag = health.consumer_lag(kafka_topics.group, kafka_topics.trades)
    assert lag["error"] is None
    by_partition = {row["partition"]: row for row in lag["partitions"]}
    assert sorted(by_partition) == [0, 1, 2, 3, 4, 5]
    assert by_partition[0] == {"partition": 0, "committed": 6, "end": 10, "lag": 4}
    assert by_partition[1] == {"partition": 1, "committed": 4, "end": 4, "lag": 0}
    # Never committed: the whole backlog is lag.
    assert by_partition[2] == {"partition": 2, "committed": None, "end": 7, "lag": 7}
    assert by_partition[3]["lag"] == 0
    assert lag["total_lag"] == 11

    assert health.dlq_count(kafka_topics.dlq) == {"topic": kafka_topics.dlq, "count": 3, "error": None}


@pytest.mark.integration
def test_a_partition_never_committed_counts_its_retained_backlog_for_health_and_the_consumer_alike(
    kafka_topics: KafkaTopics,
) -> None:
    produce(kafka_topics.trades, {0: 10, 1: 10})
    admin = admin_client()
    try:  # retention stand-in: partition 0 keeps offsets 4..9 only
        admin.delete_records({TopicPartition(kafka_topics.trades, 0): 4})
    finally:
        admin.close()
    commit(kafka_topics.group, kafka_topics.trades, {1: 7})

    rows = {row["partition"]: row for row in health.consumer_lag(kafka_topics.group, kafka_topics.trades)["partitions"]}
    assert rows[0] == {"partition": 0, "committed": None, "end": 10, "lag": 6}  # not 10: offsets 0..3 are gone
    assert rows[1] == {"partition": 1, "committed": 7, "end": 10, "lag": 3}

    # The consumer's watchdog reads the same figures through its own group client (not the admin API).
    member = KafkaConsumer(**client_config(), group_id=kafka_topics.group, enable_auto_commit=False)
    try:
        partitions = topic_partitions(member, kafka_topics.trades)
        committed = committed_by_member(member, partitions, timeout_ms=5000)
        lag = group_lag(member, kafka_topics.group, partitions, committed, timeout_ms=5000)
    finally:
        member.close()
    assert [p.as_dict() for p in lag.partitions] == [rows[p] for p in sorted(rows)]
    assert lag.committed[0] is None
    assert lag.total == 9


@pytest.mark.integration
def test_missing_topic_and_unreachable_broker_are_reported_not_raised(settings: Any) -> None:
    missing = unique("test.missing")
    assert "does not exist" in health.dlq_count(missing)["error"]
    assert health.consumer_lag(unique("g"), missing)["total_lag"] is None
    settings.KAFKA_BOOTSTRAP_SERVERS = ["127.0.0.1:1"]
    down = health.consumer_lag("analytics", "market.trades")
    assert down["error"]
    assert down["partitions"] == []
    assert health.dlq_count("market.trades.dlq")["count"] is None


def test_ingest_rate_between_snapshots(redis_client: redis.Redis) -> None:
    first = {"exchange": "binance", "at": 1_000_000, "trades_published": 1000, "throughput_trades_per_s": 50.0}
    redis_client.set("metrics:ingest:binance", json.dumps(first))
    redis_client.set("metrics:ingest:kraken", b"{not json")
    section = health.ingest_health(redis_client)
    assert section["exchanges"]["binance"]["rate"] == 50.0  # no earlier snapshot: the process average
    assert "kraken" not in section["exchanges"]
    second = {**first, "at": 1_010_000, "trades_published": 3500}
    redis_client.set("metrics:ingest:binance", json.dumps(second))
    section = health.ingest_health(redis_client)
    assert section["exchanges"]["binance"]["rate"] == 250.0  # 2,500 trades in 10 s
    assert section["rate"] == 250.0
    assert section["exchanges"]["binance"]["snapshot"]["trades_published"] == 3500


@pytest.mark.integration
@pytest.mark.django_db
@pytest.mark.usefixtures("locmem_cache", "kafka_topics")
def test_trades_ingest_could_not_backfill_are_shown(redis_client: redis.Redis, client: Client) -> None:
    base = {"at": 1_000_000, "trades_published": 10, "throughput_trades_per_s": 1.0}
    snapshots = {
        "kraken": {**base, "exchange": "kraken", "backfill_abandoned_trades": 7, "backfill_unrecoverable_trades": 1500},
        "coinbase": {
            **base,
            "exchange": "coinbase",
            "backfill_abandoned_trades": 0,
            "backfill_unrecoverable_trades": 0,
        },
        # A process of an older release reports neither figure: nothing is claimed for it.
        "binance": {**base, "exchange": "binance"},
    }
    for exchange, snapshot in snapshots.items():
        redis_client.set(f"metrics:ingest:{exchange}", json.dumps(snapshot))
    section = health.ingest_health(redis_client)
    assert section["exchanges"]["kraken"]["not_recovered"] == {"abandoned": 7, "unrecoverable": 1500, "total": 1507}
    assert section["exchanges"]["coinbase"]["not_recovered"]["total"] == 0
    assert section["exchanges"]["binance"]["not_recovered"]["total"] == 0
    assert section["not_recovered"] == 1507
    # The API carries them to the page (whose script fills the tile and the column: tests/dashboard/test_browser.py).
    body = client.get("/api/v1/health").json()
    assert body["ingest"]["not_recovered"] == 1507
    assert body["ingest"]["exchanges"]["kraken"]["not_recovered"]["unrecoverable"] == 1500
    html = client.get("/health/").content.decode()
    assert 'id="kpi-lost"' in html
    assert "Not recovered</th>" in html


def test_ingest_rate_edge_cases() -> None:
    assert health.ingest_rate({"at": 5}, None) is None
    assert health.ingest_rate({"at": 5, "throughput_trades_per_s": "bad"}, None) is None
    # A restarted process (counter went down) falls back to its own average.
    assert (
        health.ingest_rate(
            {"at": 20, "trades_published": 5, "throughput_trades_per_s": 9.5}, {"at": 10, "trades_published": 50}
        )
        == 9.5
    )


def test_queue_depths_count_every_priority(redis_client: redis.Redis) -> None:
    queue = unique("test-queue")
    try:
        redis_client.rpush(queue, b"a", b"b")
        redis_client.rpush(queue + "\x06\x169", b"c")
        assert health.queue_depths(redis_client, (queue, queue + "-empty")) == {queue: 3, queue + "-empty": 0}
    finally:
        redis_client.delete(queue, queue + "\x06\x169")


@pytest.mark.django_db
def test_last_trade_age_per_symbol() -> None:
    make_trades(20, exchange="binance", symbol="BTCUSDT")
    make_stats("coinbase", "BTC-USD")  # statistics only (trades retained away): the stats' last trade time
    now = T0 + timedelta(minutes=1)
    rows = {(r["exchange"], r["symbol"]): r for r in health.last_trades(now)}
    btc = rows[("binance", "BTCUSDT")]
    assert btc["last_trade_at"] == (T0 + timedelta(milliseconds=250 * 19)).isoformat()
    assert btc["age_seconds"] == 55.25
    assert rows[("coinbase", "BTC-USD")]["age_seconds"] == 60.0


@pytest.mark.integration
@pytest.mark.django_db
@pytest.mark.usefixtures("locmem_cache")
def test_health_endpoint(client: Client, kafka_topics: KafkaTopics, redis_client: redis.Redis) -> None:
    make_trades(3)
    produce(kafka_topics.trades, {3: 5})
    redis_client.set("metrics:consumer:host-42", json.dumps({"batches": 7}), ex=30)
    body = client.get("/api/v1/health").json()
    assert body["kafka"]["topic"] == kafka_topics.trades
    assert body["kafka"]["group"] == kafka_topics.group
    assert body["kafka"]["error"] is None
    assert body["kafka"]["total_lag"] == 5
    assert body["dlq"]["count"] == 0
    assert body["consumers"] == {"host-42": {"batches": 7}}
    assert set(body["queues"]) == {"analytics", "alerts", "default", "ml", "backtest", "notify"}  # every CeleryQueue
    assert [r["symbol"] for r in body["symbols"]] == ["BTCUSDT"]
    assert body["errors"] == []
    assert body["replica"] is None  # no DATABASE_REPLICA_URL (tests/dashboard/test_replica.py has one)
    # Kafka figures are cached for a couple of seconds: more records do not show at once.
    produce(kafka_topics.trades, {3: 2})
    assert client.get("/api/v1/health").json()["kafka"]["total_lag"] == 5
    health.clear_cache()
    assert client.get("/api/v1/health").json()["kafka"]["total_lag"] == 7


@pytest.mark.django_db
def test_unreachable_redis_is_reported(settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.KAFKA_BOOTSTRAP_SERVERS = ["127.0.0.1:1"]
    body = health.pipeline_health()
    assert body["ingest"] == {"rate": None, "not_recovered": None, "exchanges": {}}
    assert body["queues"] is None
    assert len(body["errors"]) == 3
    assert all("127.0.0.1:1" in e for e in body["errors"])
    assert body["kafka"]["error"]


# --------------------------------------------------------------------------------------------- consumer liveness
def _lag(total: int | None, committed: list[int | None]) -> dict[str, Any]:
    rows = [{"partition": i, "committed": c, "end": 0, "lag": 0} for i, c in enumerate(committed)]
    error = None if total is not None else "unreachable"
    return {"topic": "t", "group": "g", "partitions": rows, "total_lag": total, "error": error}


def test_liveness_needs_lag_without_commit_progress_for_longer_than_the_bound() -> None:
    assert health.consumer_liveness({}, _lag(5, [0]), 10, now=0)["status"] == "ok"
    assert health.consumer_liveness({}, _lag(5, [0]), 10, now=10)["status"] == "ok"  # at the bound
    stalled = health.consumer_liveness({}, _lag(5, [0]), 10, now=11)
    assert stalled["status"] == "stalled"
    assert "5 records wait and the group committed nothing for 11 s (0 members with partitions" in stalled["reason"]
    assert health.consumer_liveness({}, _lag(3, [2]), 10, now=12)["status"] == "ok"  # a commit: progress
    assert health.consumer_liveness({}, _lag(3, [2]), 10, now=20)["status"] == "ok"
    assert health.consumer_liveness({}, _lag(0, [5]), 10, now=100)["status"] == "ok"  # nothing waits
    unknown = health.consumer_liveness({}, _lag(None, []), 10, now=200)
    assert unknown["status"] == "unknown"


def test_a_member_reporting_a_stall_makes_the_group_stalled_at_once() -> None:
    consumers: dict[str, dict[str, Any]] = {
        "a": {"assigned_partitions": 3, "stalled": False},
        "b": {"stalled": True, "no_progress_s": 130.0},
    }
    verdict = health.consumer_liveness(consumers, _lag(9, [1]), 120, now=0)
    assert verdict["status"] == "stalled"
    assert verdict["reason"] == "consumer b reports no progress for 130.0 s (1 of 2 members stalled)"
    assert verdict["members"] == 2


@pytest.mark.integration
@pytest.mark.django_db
@pytest.mark.usefixtures("locmem_cache")
def test_healthz_is_503_while_records_wait_without_commit_progress(
    kafka_topics: KafkaTopics, settings: Any, client: Client, redis_client: redis.Redis
) -> None:
    settings.CONSUMER_STALL_TIMEOUT_S = 1
    produce(kafka_topics.trades, {0: 3, 4: 2})
    response = wait_for(lambda: (r := client.get("/healthz")).status_code == 503 and r, what="healthz 503")
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "ok"
    assert body["consumers"] == "stalled"
    assert "5 records wait and the group committed nothing" in health.group_liveness()["reason"]
    assert client.get("/api/v1/health").json()["liveness"]["status"] == "stalled"
    commit(kafka_topics.group, kafka_topics.trades, {0: 3, 4: 2})
    wait_for(lambda: client.get("/healthz").status_code == 200, what="healthz 200 once the group catches up")
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok", "consumers": "ok"}


@pytest.mark.django_db
@pytest.mark.usefixtures("locmem_cache")
def test_book_syncs_and_resyncs_per_exchange_and_the_books_consumers_are_shown(
    redis_client: redis.Redis, client: Client
) -> None:
    base = {"at": 1_000_000, "trades_published": 10, "throughput_trades_per_s": 1.0}
    redis_client.set("metrics:ingest:binance", json.dumps({**base, "book_syncs": 3, "book_resyncs": 2}))
    redis_client.set("metrics:ingest:kraken", json.dumps(base))  # --channels trades (or an older release)
    member = {"consumed": 120, "applied": 118, "breaks": 1, "invalid_snapshots": 1, "dead_lettered": 1,
              "markets": 2, "valid_markets": 1, "batches": 4}  # fmt: skip
    redis_client.set("metrics:books:host-42", json.dumps(member), ex=30)
    section = health.ingest_health(redis_client)
    assert section["exchanges"]["binance"]["books"] == {"syncs": 3, "resyncs": 2}
    assert section["exchanges"]["kraken"]["books"] == {"syncs": 0, "resyncs": 0}
    body = client.get("/api/v1/health").json()
    assert body["ingest"]["exchanges"]["binance"]["books"]["resyncs"] == 2
    assert body["book_consumers"]["host-42"] == member
    html = client.get("/health/").content.decode()
    assert "Book syncs / resyncs</th>" in html
    assert 'id="books-table"' in html
