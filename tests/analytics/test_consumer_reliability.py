"""The consumer's reliability on the real Kafka, PostgreSQL and Redis: hostile records, refused dead-letter
writes, stalled members and statement timeouts. Per-test topics and group (``kafka_topics``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest
import redis
from django.conf import settings
from django.db import OperationalError, connection
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kombu.exceptions import OperationalError as BrokerOperationalError

from analytics.consumer import ConsumerConfig
from analytics.consumer.dead_letters import DeadLetterSender, LetterId
from analytics.models import Trade
from analytics.storage import store_trades
from analytics.watchdog import StalledError
from analytics.windows import SymbolWindow
from cryptoproject.kafka import TopicSpec, admin_client, client_config, ensure_topics
from dashboard import health
from ingest.records import DeadLetter, TradeRecord
from tests.analytics.test_consumer import (
    Runner,
    assert_one_row_per_trade,
    dlq_messages,
    fully_committed,
    offsets,
    produce,
    real_trades,
)
from tests.conftest import manage, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

KEY = b"binance:BTCUSDT"
UNHASHABLE_EXCHANGE_RECORD = (
    b'{"v":1,"exchange":[],"symbol":"BTCUSDT","trade_id":1,"price":"1","quantity":"1","is_buyer_maker":true,'
    b'"trade_time":1723161255342,"event_time":1723161255343,"received_at":1723161256612}'
)
HUGE = b'{"v":1,"exchange":"binance","pad":"' + b"x" * 300_000 + b'"}'


def _wire(record: TradeRecord, **overrides: Any) -> bytes:
    return orjson.dumps({**record.to_dict(), **overrides})


def _with(
    records: list[TradeRecord], at: int, extra: list[tuple[bytes | None, bytes]]
) -> list[tuple[bytes | None, bytes]]:
    """The records' messages with ``extra`` inserted at position ``at``."""
    values: list[tuple[bytes | None, bytes]] = [(r.key, r.encode()) for r in records]
    values[at:at] = extra
    return values


def _topic(partitions: int, config: dict[str, str] | None = None) -> str:
    name = unique("test.extra")
    ensure_topics([TopicSpec(name, partitions, config or {})])
    return name


@pytest.fixture
def extra_topics() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    admin = admin_client()
    try:
        admin.delete_topics(names)
    except Exception:  # noqa: BLE001 - cleanup is best effort; names are unique anyway
        pass
    finally:
        admin.close()


def test_hostile_records_are_dead_lettered_and_every_valid_record_is_stored_once(kafka_topics):
    good = real_trades(600)
    day_ahead = 4_000_000_000_000  # 2096: in the schema's range, far ahead of every clock
    hostile: dict[str, bytes | None] = {
        "unknown exchange []": UNHASHABLE_EXCHANGE_RECORD,  # TypeError: unhashable type: 'list' before
        "unknown exchange {'a': 1}": _wire(good[0], exchange={"a": 1}),
        "trade_id must be a non-negative 64-bit integer, got '\u00b2'": _wire(good[1], trade_id="\u00b2"),
        "trade_id must be a non-negative 64-bit integer, got '99999": _wire(good[2], trade_id="9" * 5000),
        "malformed JSON": b'{"v":1,"trade_id":' + b"9" * 5000 + b"}",
        "malformed JSON: ": b"\x00\xffnot json {",
        "record is not a JSON object": b"[1, 2]",
        "missing field 'symbol'": HUGE,
        "empty message": None,
        "more than the allowed clock skew": _wire(good[3], trade_time=good[3].received_at + 3_600_000),
        "ahead of the consumer's clock": _wire(
            good[4], trade_time=day_ahead, event_time=day_ahead, received_at=day_ahead
        ),
    }
    values: list[tuple[bytes | None, bytes | None]] = [(r.key, r.encode()) for r in good]
    for i, value in enumerate(hostile.values()):
        values.insert(40 * i + 7, (KEY, value))
    produce(values)  # type: ignore[arg-type]
    with Runner(ConsumerConfig(batch_size=100, batch_ms=50)) as runner:
        wait_for(lambda: runner.consumer.metrics.dead_lettered == len(hostile), what="every hostile record refused")
        wait_for(fully_committed, what="offsets committed past every hostile record")
        assert runner.thread.is_alive()
    assert runner.error is None
    assert_one_row_per_trade(good)
    assert runner.consumer.metrics.stored == len(good)
    letters = dlq_messages(len(hostile))
    assert len(letters) == len(hostile)
    reasons = [letter["reason"] for letter in letters]
    for expected in hostile:
        assert any(r.startswith(expected) or expected in r for r in reasons), (expected, reasons)
    for letter in letters:
        assert letter["topic"] == kafka_topics.trades
        assert isinstance(letter["offset"], int)
        assert len(letter["reason"]) < 400
    (huge,) = [letter for letter in letters if letter["raw_length"] == len(HUGE)]
    assert huge["raw_truncated"] is True
    assert len(huge["raw"].encode()) == 64 * 1024
    assert HUGE.decode().startswith(huge["raw"])
    (issue,) = [letter for letter in letters if letter["reason"] == "unknown exchange []"]
    assert issue["raw"] == UNHASHABLE_EXCHANGE_RECORD.decode()
    assert issue["raw_truncated"] is False
    assert issue["raw_length"] == len(UNHASHABLE_EXCHANGE_RECORD)


def test_a_failing_dead_letter_write_is_retried_never_skipped_and_commits_only_once_acknowledged(
    kafka_topics, settings, extra_topics
):
    # The broker does not create topics on demand: every write to a missing DLQ topic fails (after max_block_ms).
    dlq = unique("test.missing-dlq")
    settings.KAFKA_DLQ_TOPIC = dlq
    good = real_trades(200)
    produce(_with(good, 100, [(KEY, b"{oops")]))
    config = ConsumerConfig(batch_size=1000, batch_ms=300, dlq_max_block_ms=500, backoff_max_s=0.5)
    with Runner(config) as runner:
        wait_for(lambda: runner.consumer.metrics.failures >= 2, what="dead-letter delivery failing, retried")
        assert runner.thread.is_alive()
        assert Trade.objects.count() == len(good)  # stored (idempotently) before the dead letter
        _, committed = offsets()
        assert sum(committed.values()) == 0  # nothing committed while the dead letter is unacknowledged
        ensure_topics([TopicSpec(dlq, 1, {})])
        extra_topics.append(dlq)
        wait_for(fully_committed, timeout=60, what="commit once the dead-letter topic acknowledges")
    assert runner.error is None
    assert_one_row_per_trade(good)
    (letter,) = dlq_messages(1)
    assert letter["reason"].startswith("malformed JSON")


def test_a_dead_letter_over_the_brokers_limit_is_cut_and_delivered(kafka_topics, settings, extra_topics):
    # The broker accepts at most 4 KiB per message on this topic: the 64 KiB prefix is refused, a 1 KiB one fits.
    dlq = _topic(1, {"max.message.bytes": "4096"})
    extra_topics.append(dlq)
    settings.KAFKA_DLQ_TOPIC = dlq
    good = real_trades(100)
    produce(_with(good, 50, [(KEY, b"{small"), (KEY, HUGE)]))  # one batch: the small one acknowledged, the huge not
    with Runner(ConsumerConfig(batch_size=500, batch_ms=300, backoff_max_s=0.5)) as runner:
        wait_for(fully_committed, what="offsets committed past the huge record")
    assert runner.error is None
    assert_one_row_per_trade(good)
    assert health.dlq_count(settings.KAFKA_DLQ_TOPIC)["count"] == 2  # the acknowledged one was not sent again
    small, letter = dlq_messages(2)
    assert small["raw"] == "{small"
    assert letter["raw_length"] == len(HUGE)
    assert letter["raw_truncated"] is True
    assert len(letter["raw"]) <= 1024
    assert letter["reason"] == "missing field 'symbol'"
    assert runner.consumer.metrics.failures >= 1


def test_offsets_a_rebalance_refused_are_committed_later_even_on_an_idle_topic(kafka_topics):
    good = real_trades(300)
    produce([(r.key, r.encode()) for r in good])
    rebalancing = threading.Event()
    rebalancing.set()
    runner = Runner(ConsumerConfig(batch_size=1000, batch_ms=50))
    # Every commit lands "during a rebalance" until the event is cleared, as when the group rebalances right after
    # the first assignment on a fresh topic (seen in this file's tests before the fix: offsets never committed).
    runner.consumer.commit.rebalancing = rebalancing.is_set
    with runner:
        wait_for(lambda: Trade.objects.count() == len(good), what="every trade stored")
        wait_for(lambda: runner.consumer.metrics.commits_skipped >= 2, what="commits refused and retried")
        assert sum(offsets()[1].values()) == 0
        rebalancing.clear()  # the rebalance is over; no new record arrives
        wait_for(fully_committed, what="the refused offsets committed by the idle loop")
    assert runner.error is None
    assert_one_row_per_trade(good)


def test_a_letter_over_the_producers_own_limit_is_cut_and_never_sent_twice(kafka_topics):
    producer = KafkaProducer(**client_config(), acks="all", max_request_size=4096, enable_idempotence=False)
    sender = DeadLetterSender(producer, kafka_topics.dlq, flush_timeout_s=10)
    letter = DeadLetter("consumer:g", "too big", "x" * 20_000, 1, kafka_topics.trades, 0, 7, 20_000, False)
    acked: set[LetterId] = set()
    try:
        sender.send([(KEY, letter)], acked, set())  # send() itself raises MessageSizeTooLargeError: cut, sent
        assert acked == {(0, 7)}
        sender.send([(KEY, letter)], acked, set())  # a retried batch: already acknowledged, nothing sent
    finally:
        producer.close()
    assert health.dlq_count(settings.KAFKA_DLQ_TOPIC)["count"] == 1
    (sent,) = dlq_messages(1)
    assert sent["raw"] == "x" * 1024
    assert sent["raw_truncated"] is True
    assert sent["raw_length"] == 20_000


class _BrokerDownRunner(Runner):
    def dispatch(self, windows: list[SymbolWindow]) -> None:
        raise BrokerOperationalError("Celery broker unreachable")


def test_a_stalled_store_stops_the_worker_and_health_reports_the_group_stalled(kafka_topics, settings, client):
    settings.CONSUMER_STALL_TIMEOUT_S = 2
    produce([(r.key, r.encode()) for r in real_trades(300)])
    config = ConsumerConfig(
        batch_size=100, batch_ms=50, stall_timeout_s=2, metrics_interval_s=0.2, backoff_initial_s=0.1, backoff_max_s=0.3
    )
    runner = _BrokerDownRunner(config)
    with runner:
        wait_for(lambda: not runner.thread.is_alive(), what="the watchdog to stop the worker")
    assert isinstance(runner.error, StalledError)
    assert "no commit progress" in str(runner.error)
    _, committed = offsets()
    assert sum(committed.values()) == 0
    metrics = redis.Redis.from_url(settings.REDIS_URL)
    try:
        raw = metrics.get(runner.consumer.metrics_key)
        assert isinstance(raw, bytes)
        snapshot = orjson.loads(raw)
        assert snapshot["stalled"] is True
        assert snapshot["assigned_partitions"] == 6
        assert snapshot["stall_timeout_s"] == 2
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["consumers"] == "stalled"
        assert "reports no progress" in health.group_liveness()["reason"]
        assert health.pipeline_health()["liveness"]["status"] == "stalled"
    finally:
        metrics.delete(runner.consumer.metrics_key)  # a stalled snapshot would fail later /healthz checks
        metrics.close()


def test_a_member_that_never_gets_partitions_exits_non_zero(kafka_topics, settings, extra_topics, spawn):
    # One partition, held by a member that stopped polling: the broker waits (its rebalance timeout is long) and
    # the newcomer sits in the group without partitions while records wait, the kafka-python rejoin hazard.
    topic = _topic(1)
    extra_topics.append(topic)
    settings.KAFKA_TRADES_TOPIC = topic
    squatter = KafkaConsumer(
        **client_config(),
        group_id=kafka_topics.group,
        enable_auto_commit=False,
        max_poll_interval_ms=300_000,
        session_timeout_ms=10_000,
    )
    try:
        squatter.subscribe([topic])
        # A first join waits out the broker's group set-up; on a machine loaded far beyond its cores (a fresh-clone
        # run beside two others) it took more than 30 s: the same budget as the child's below.
        wait_for(
            lambda: squatter.poll(timeout_ms=200) is not None and squatter.assignment(), timeout=90, what="a partition"
        )
        produce([(r.key, r.encode()) for r in real_trades(50)], topic=topic)
        child = spawn(manage("consume_trades", "--stall-timeout", "2", "--batch-ms", "50"), name="unassigned")
        assert child.proc.wait(90) != 0, child.output()
        out = child.output()
        assert "consumer stalled" in out
        assert "no partitions assigned" in out
        assert squatter.committed(TopicPartition(topic, 0)) is None
    finally:
        squatter.close(autocommit=False)


def test_the_statement_timeout_bounds_a_blocked_store():
    records = real_trades(10)
    db = settings.DATABASES["default"]
    blocker = psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"], dbname=db["NAME"]
    )
    try:
        blocker.execute("LOCK TABLE analytics_trade IN ACCESS EXCLUSIVE MODE")  # held until rollback
        with pytest.raises(OperationalError, match="statement timeout"):
            store_trades(records, statement_timeout_ms=300)
    finally:
        blocker.rollback()
        blocker.close()
    connection.close()
    assert store_trades(records, statement_timeout_ms=300).inserted == len(records)
    assert_one_row_per_trade(records)
