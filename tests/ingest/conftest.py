"""Fixtures shared by the ingest tests: Binance metrics and a real producer on the test's own topics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ingest.metrics import IngestMetrics
from ingest.producer import TradeProducer
from tests.conftest import KafkaTopics


@pytest.fixture
def metrics() -> IngestMetrics:
    return IngestMetrics("binance")


@pytest.fixture
def producer(kafka_topics: KafkaTopics, metrics: IngestMetrics) -> Iterator[TradeProducer]:
    producer = TradeProducer(metrics)
    yield producer
    producer.close(timeout=10)
