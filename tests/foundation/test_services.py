"""The foundation on the real servers: PostgreSQL through pytest-django, a Kafka round trip with a group offset
commit, a task run by a real Celery worker process, and a Channels group_send through the Redis layer."""

from __future__ import annotations

import os
import uuid
from decimal import Decimal
from typing import Any

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.utils import timezone
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from analytics.models import Trade
from cryptoproject.celery import ping
from cryptoproject.kafka import admin_client, client_config
from tests.conftest import KafkaTopics


@pytest.mark.django_db
def test_database_is_postgresql_and_keeps_decimals_exact() -> None:
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        assert int(cursor.fetchone()[0].split(".")[0]) >= 13
    now = timezone.now()
    Trade.objects.create(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id=1,
        price=Decimal("61837.63000001"),
        quantity=Decimal("0.00012345"),
        is_buyer_maker=True,
        traded_at=now,
        received_at=now,
    )
    trade = Trade.objects.get(exchange="binance", symbol="BTCUSDT", trade_id=1)
    assert trade.price == Decimal("61837.63000001")
    # The generated column is computed by PostgreSQL, exactly.
    assert trade.quote_quantity == Decimal("61837.63000001") * Decimal("0.00012345")
    assert trade.stored_at is not None


def test_kafka_round_trip_with_group_offset_commit(kafka_topics: KafkaTopics) -> None:
    producer = KafkaProducer(**client_config(), acks="all", enable_idempotence=True, linger_ms=5)
    keys = [f"binance:SYM{i % 3}".encode() for i in range(30)]
    for i, key in enumerate(keys):
        producer.send(kafka_topics.trades, key=key, value=f"message-{i}".encode())
    producer.flush(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        kafka_topics.trades,
        **client_config(),
        group_id=kafka_topics.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20000,
    )
    received: list[tuple[bytes, bytes]] = []
    for message in consumer:
        received.append((message.key, message.value))
        if len(received) == len(keys):
            break
    offsets = {tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in consumer.assignment()}
    consumer.commit(offsets)
    consumer.close()

    assert sorted(v for _, v in received) == sorted(f"message-{i}".encode() for i in range(30))
    # Same key, same partition, in order: each symbol's messages arrive in the order sent.
    for sym in {k for k, _ in received}:
        values = [int(v.decode().split("-")[1]) for k, v in received if k == sym]
        assert values == sorted(values)

    admin = admin_client()
    try:
        committed = admin.list_group_offsets(kafka_topics.group)[kafka_topics.group]
    finally:
        admin.close()
    assert sum(meta.offset for tp, meta in committed.items() if tp.topic == kafka_topics.trades) == len(keys)
    assert all(isinstance(tp, TopicPartition) for tp in committed)


@pytest.mark.django_db(transaction=True)
def test_celery_task_runs_in_a_real_worker_process(celery_worker_process: Any) -> None:
    token = uuid.uuid4().hex
    result = ping.delay(token).get(timeout=60)
    assert result["token"] == token
    assert result["pid"] != os.getpid()
    assert result["pid"] == celery_worker_process.proc.pid or result["pid"] > 0


class _EchoGroupConsumer(AsyncJsonWebsocketConsumer):
    group = "foundation-test"

    async def connect(self) -> None:
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def push(self, event: dict[str, Any]) -> None:
        await self.send_json(event["payload"])


@pytest.mark.django_db
async def test_channels_group_send_reaches_websocket_through_redis() -> None:
    layer = get_channel_layer()
    assert type(layer).__module__.startswith("channels_redis"), "tests must use the Redis channel layer"
    _EchoGroupConsumer.group = f"foundation-{uuid.uuid4().hex[:8]}"
    communicator = WebsocketCommunicator(_EchoGroupConsumer.as_asgi(), "/ws/test/")
    connected, _ = await communicator.connect()
    assert connected
    await layer.group_send(_EchoGroupConsumer.group, {"type": "push", "payload": {"kind": "hello", "n": 1}})
    assert await communicator.receive_json_from(timeout=10) == {"kind": "hello", "n": 1}
    # Another group's message does not arrive here.
    await layer.group_send("foundation-other", {"type": "push", "payload": {"kind": "other"}})
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
