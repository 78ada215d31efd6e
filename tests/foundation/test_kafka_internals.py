"""kafka-python's private internals the project uses (cryptoproject/kafka_internals.py) are all still there.

An upgrade of the pin fails here first, loudly, naming the version and every attribute that moved, instead of
ingest silently falling back to the slow ``send()`` path or the consumer misjudging rebalances.
"""

from __future__ import annotations

import re

from kafka import KafkaConsumer, KafkaProducer

from cryptoproject.kafka import client_config
from cryptoproject.kafka_internals import (
    CONSUMER_INTERNALS,
    PINNED_VERSION,
    PRODUCER_INTERNALS,
    installed_version,
    missing_internals,
    rebalance_in_progress,
)
from tests.conftest import ROOT


def test_the_internals_were_read_from_the_pinned_and_installed_version() -> None:
    pinned = re.search(r"^kafka-python==(\S+)", (ROOT / "requirements" / "base.in").read_text(), re.M)
    assert pinned is not None
    assert pinned.group(1) == PINNED_VERSION == installed_version(), (
        f"kafka-python {installed_version()} installed, {pinned.group(1)} pinned: cryptoproject/kafka_internals.py "
        f"was written against {PINNED_VERSION}; re-read the internals it lists, then update PINNED_VERSION"
    )


def test_real_clients_have_every_internal_the_project_uses() -> None:
    producer = KafkaProducer(**client_config())
    consumer = KafkaConsumer(**client_config(), group_id="kafka-internals-check", enable_auto_commit=False)
    try:
        assert missing_internals(producer, consumer) == [], f"kafka-python {installed_version()} moved these"
        assert rebalance_in_progress(consumer) is False  # not subscribed: no group to rebalance
    finally:
        consumer.close()
        producer.close(timeout=5)


def test_missing_internals_names_each_missing_attribute() -> None:
    class Bare:
        pass

    assert missing_internals(Bare(), Bare()) == [
        *(f"Bare.{path}" for path in PRODUCER_INTERNALS),
        *(f"Bare.{path}" for path in CONSUMER_INTERNALS),
    ]
    assert rebalance_in_progress(Bare()) is False
