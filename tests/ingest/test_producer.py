"""TradeProducer against the real broker: the batch appender and the send() path, splits, refusals, counts."""

from __future__ import annotations

import pytest

from cryptoproject.kafka import TopicSpec, ensure_topics
from ingest.metrics import IngestMetrics
from ingest.producer import BatchAppender, TradeProducer
from ingest.records import DeadLetter, TradeRecord, decode, make_trade
from tests.conftest import unique
from tests.ingest.pipeline import read_topic

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
    producer.close(timeout=30)
    assert [decode(value) for _key, value in read_topic(trades_topic, len(sent))] == sent
    assert (metrics.trades_published, metrics.publish_errors) == (60, 0)


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
