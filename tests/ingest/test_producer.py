"""TradeProducer against the real broker: the batch appender and the send() path, splits, refusals, counts."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.structs import TopicPartition

from cryptoproject.kafka import TopicSpec, ensure_topics
from ingest.metrics import IngestMetrics
from ingest.producer import BatchAppender, TradeProducer, held_bytes
from ingest.records import DeadLetter, TradeRecord, decode, make_trade
from tests.conftest import unique, wait_for
from tests.faults import FrozenKafka
from tests.ingest.pipeline import read_ids, read_topic

pytestmark = pytest.mark.integration

T0 = 1_723_161_255_342


def trades(count: int, symbol: str = "BTCUSDT", first_id: int = 1) -> list[TradeRecord]:
    """``count`` consecutive trades of ``symbol``."""
    return [
        make_trade(
            exchange="binance",
            symbol=symbol,
            trade_id=first_id + i,
            price=f"{60000 + i}.01000000",
            quantity="0.00100000",
            is_buyer_maker=i % 2 == 0,
            trade_time=T0 + i,
            event_time=T0 + i,
            received_at=T0 + i,
        )
        for i in range(count)
    ]


def topic_pair(partitions: int = 3, **config: str) -> tuple[str, str]:
    """A fresh trades topic (with ``config``) and a fresh DLQ topic."""
    trades_topic, dlq_topic = unique("test.producer"), unique("test.producer.dlq")
    ensure_topics([TopicSpec(trades_topic, partitions, config), TopicSpec(dlq_topic, 1, {})])
    return trades_topic, dlq_topic


@pytest.mark.parametrize("fast", [True, False], ids=["batch-appender", "send"])
def test_every_trade_lands_in_order_and_is_counted(fast: bool) -> None:
    trades_topic, dlq_topic = topic_pair()
    metrics = IngestMetrics("binance")
    producer = TradeProducer(metrics, trades_topic=trades_topic, dlq_topic=dlq_topic, fast=fast)
    assert (producer._appender is not None) is fast
    sent = trades(3000) + trades(500, symbol="ETHUSDT")
    assert producer.publish(sent[:1000]) + producer.publish(sent[1000:]) == len(sent)
    producer.close(timeout=30)

    messages = read_topic(trades_topic, len(sent))
    assert len(messages) == len(sent)
    by_symbol: dict[str, list[TradeRecord]] = {}
    for key, value in messages:
        record = decode(value)
        assert key == record.key
        by_symbol.setdefault(record.symbol, []).append(record)
    # Each symbol is in one partition, so it reads back in the order it was published, byte for byte.
    assert by_symbol["BTCUSDT"] == sent[:3000]
    assert by_symbol["ETHUSDT"] == sent[3000:]
    assert (metrics.trades_accepted, metrics.trades_published, metrics.publish_errors) == (3500, 3500, 0)
    _buckets, _total, samples = metrics.latency()
    assert samples >= 1
    assert metrics.last_acked_at is not None


def test_oversized_batches_are_split_and_still_counted() -> None:
    # The broker refuses any batch over 2,000 bytes: kafka-python splits ours until each half fits.
    trades_topic, dlq_topic = topic_pair(partitions=1, **{"max.message.bytes": "2000"})
    metrics = IngestMetrics("binance")
    producer = TradeProducer(
        metrics, trades_topic=trades_topic, dlq_topic=dlq_topic, compression_type=None, linger_ms=200
    )
    sent = trades(60)
    producer.publish(sent)
    # kafka-python's own flush waits on a split batch until its timeout and then raises (it never completes
    # that batch: its halves are new batches); under load that left close() returning before the halves were
    # acknowledged (this test once failed that way on a cold run). flush() now counts acknowledgements.
    assert producer.flush(timeout=60) is True
    assert (metrics.trades_published, metrics.publish_errors, producer.held) == (60, 0, 0)
    assert producer.close(timeout=30) == 0
    assert [decode(value) for _key, value in read_topic(trades_topic, len(sent))] == sent


def test_refused_trades_and_dead_letters_are_counted_as_errors(caplog: pytest.LogCaptureFixture) -> None:
    # Topics that refuse every record: their max message size is smaller than one record.
    trades_topic, dlq_topic = unique("test.tiny"), unique("test.tiny.dlq")
    ensure_topics([TopicSpec(name, 1, {"max.message.bytes": "64"}) for name in (trades_topic, dlq_topic)])
    metrics = IngestMetrics("binance")
    producer = TradeProducer(metrics, trades_topic=trades_topic, dlq_topic=dlq_topic, compression_type=None)
    with caplog.at_level("ERROR", logger="ingest.producer"):
        producer.publish(trades(1))
        producer.dead_letter(DeadLetter(source="ingest:binance", reason="test", raw="x" * 200, received_at=1))
        producer.close(timeout=20)
    assert metrics.publish_errors == 2
    assert (metrics.trades_published, metrics.dlq_published) == (0, 0)
    messages = [r.message for r in caplog.records]
    assert "trades not delivered to Kafka" in messages
    assert "dead letter not delivered to Kafka" in messages


def test_the_pinned_kafka_python_has_what_the_appender_needs() -> None:
    producer = TradeProducer(IngestMetrics("binance"))
    try:
        assert BatchAppender.supported(producer.producer)
    finally:
        producer.close(timeout=10)


@pytest.fixture
def frozen_kafka() -> Iterator[FrozenKafka]:
    """A :class:`FrozenKafka`; the broker is thawed at teardown whatever the test did."""
    kafka = FrozenKafka()
    yield kafka
    kafka.thaw()


def test_recover_resends_what_a_broken_producer_held_through_a_fresh_one(
    frozen_kafka: FrozenKafka,
) -> None:
    trades_topic, dlq_topic = topic_pair()
    metrics = IngestMetrics("binance")
    producer = TradeProducer(metrics, trades_topic=trades_topic, dlq_topic=dlq_topic)
    producer.prepare()
    frozen_kafka.freeze()  # nothing can be acknowledged now: the old producer cannot have delivered anything
    sent = trades(500)
    producer.publish(sent)
    producer.dead_letter(DeadLetter(source="ingest:binance", reason="test", raw="x", received_at=1))
    assert producer.held == 501
    old = producer.producer
    assert producer.recover() == 501  # what the old producer held, aborted and re-sent by a new one
    assert producer.producer is not old
    frozen_kafka.thaw()
    assert producer.flush(timeout=120) is True
    assert (metrics.trades_published, metrics.dlq_published, metrics.publish_errors) == (500, 1, 0)
    assert (metrics.producer_restarts, metrics.trades_resent) == (1, 500)
    assert producer.close(timeout=30) == 0
    # What the old producer had written to its socket before the freeze may arrive too: at least once, no loss.
    ids = {t.trade_id for t in sent}
    assert {decode(v).trade_id for _k, v in read_ids(trades_topic, ids)} == ids


@pytest.mark.parametrize("bound", ["records", "bytes"])
def test_a_full_buffer_blocks_publish_until_kafka_acknowledges(frozen_kafka: FrozenKafka, bound: str) -> None:
    trades_topic, dlq_topic = topic_pair()
    metrics = IngestMetrics("binance")
    # Either bound alone: 100 records, or the bytes of these 100 (no journal: a full buffer means back-pressure).
    size = held_bytes([t.encode() for t in trades(100)], 100)
    producer = TradeProducer(
        metrics,
        trades_topic=trades_topic,
        dlq_topic=dlq_topic,
        buffer_trades=100 if bound == "records" else None,
        buffer_bytes=size if bound == "bytes" else None,
    )
    producer.prepare()
    frozen_kafka.freeze()
    assert producer.publish(trades(100)) == 100
    results: list[int] = []
    blocked = threading.Thread(target=lambda: results.append(producer.publish(trades(50, first_id=101))))
    blocked.start()
    wait_for(lambda: metrics.backpressure_waits == 1, timeout=30, what="publish to wait for room")
    assert results == []  # back-pressure: the caller (a socket thread) waits
    assert blocked.is_alive()
    assert producer.held == metrics.buffered == 100
    frozen_kafka.thaw()
    blocked.join(120)
    assert results == [50]
    assert producer.flush(timeout=120) is True
    assert metrics.buffered_max == 100  # never above the bound
    assert metrics.buffered_bytes_max == size
    assert producer.close(timeout=30) == 0
    assert {decode(v).trade_id for _k, v in read_ids(trades_topic, set(range(1, 151)))} == set(range(1, 151))


def test_shutdown_with_kafka_away_says_how_many_were_not_delivered(
    frozen_kafka: FrozenKafka, caplog: pytest.LogCaptureFixture
) -> None:
    trades_topic, dlq_topic = topic_pair()
    metrics = IngestMetrics("binance")
    producer = TradeProducer(metrics, trades_topic=trades_topic, dlq_topic=dlq_topic, buffer_trades=100)
    producer.prepare()
    frozen_kafka.freeze()
    producer.publish(trades(100))
    results: list[int] = []
    blocked = threading.Thread(target=lambda: results.append(producer.publish(trades(7, first_id=101))))
    blocked.start()
    wait_for(lambda: metrics.backpressure_waits == 1, timeout=30, what="publish to wait for room")
    with caplog.at_level("ERROR", logger="ingest.producer"):
        producer.release()  # shutdown: the waiting publish gives up
        blocked.join(30)
        assert results == [0]
        assert producer.close(timeout=1) == 100
    assert metrics.trades_not_delivered == 107  # 7 refused while stopping, 100 held when Kafka did not answer
    assert metrics.trades_published == 0
    messages = [r.message for r in caplog.records]
    assert "records not delivered to Kafka" in messages
    assert "trades not accepted: the buffer is full and ingest is stopping" in messages


def test_a_publish_that_fails_midway_holds_only_what_it_appended() -> None:
    # A symbol whose topic has no metadata (here: the topic does not exist) raises after the first trades.
    trades_topic, dlq_topic = topic_pair()
    metrics = IngestMetrics("binance")
    producer = TradeProducer(metrics, trades_topic=trades_topic, dlq_topic=dlq_topic, max_block_ms=1000)
    producer.prepare()
    producer.trades_topic = unique("test.missing")  # new symbols route to a topic the broker does not know
    producer._routes[("binance", "BTCUSDT")] = (b"binance:BTCUSDT", TopicPartition(trades_topic, 0))
    with pytest.raises(KafkaTimeoutError):
        producer.publish(trades(3) + trades(2, symbol="ETHUSDT"))
    assert metrics.trades_accepted == 3
    assert producer.flush(timeout=60) is True  # the two that were not appended are not waited for
    assert metrics.trades_published == 3
    assert producer.held == 0
    assert producer.close(timeout=10) == 0
