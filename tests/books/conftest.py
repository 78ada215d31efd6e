"""Fixtures of the books tests that run on the real servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cryptoproject.kafka import TopicSpec, admin_client, ensure_topics
from tests.conftest import KafkaTopics, unique


@pytest.fixture
def books_topic(kafka_topics: KafkaTopics, settings: Any) -> Iterator[str]:
    """A fresh ``market.books`` stand-in (one partition: one symbol's messages in order), deleted afterwards."""
    name = unique("test.books")
    ensure_topics([TopicSpec(name, 1, {})])
    settings.KAFKA_BOOKS_TOPIC = name
    yield name
    admin = admin_client()
    try:
        admin.delete_topics([name])
    except Exception:  # noqa: BLE001 - cleanup is best effort; names are unique anyway
        pass
    finally:
        admin.close()
