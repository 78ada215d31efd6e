"""A replay into a topic that already holds its trade ids: ingest publishes nothing, and says why once.

Real simulator, real Kafka: the same recording is replayed twice into one fresh topic through ``manage.py ingest``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import pytest
from django.core.management import call_command

from ingest.runner import ALL_DUPLICATES_WARN_AFTER
from simulator.config import SimulatorConfig
from simulator.server import BackgroundSimulator
from tests.conftest import KafkaTopics, wait_for
from tests.ingest.pipeline import read_topic
from tests.ingest.test_client import records

pytestmark = pytest.mark.integration

TRADES = ALL_DUPLICATES_WARN_AFTER + 500
CAUSE = "every trade received so far was a duplicate"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and CAUSE in r.getMessage()]


def _ingest(*extra: str) -> None:
    # Trades only: a depth connection that subscribed first would start the market before the trade connection.
    call_command(
        "ingest", "--exchange", "binance", "--symbols", "btcusdt", "--channels", "trades", "--metrics-port", "0", *extra
    )


def test_a_second_replay_of_the_same_ids_warns_once_naming_the_cause_and_the_way_out(
    settings: Any, kafka_topics: KafkaTopics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    config = SimulatorConfig(exchange="binance", speed=0, ping_interval=None)
    with BackgroundSimulator(config, records(TRADES)) as sim:
        settings.BINANCE_WS_URL, settings.BINANCE_REST_URL = sim.url, sim.http_url
        _ingest("--max-trades", str(TRADES))
    assert len(read_topic(kafka_topics.trades, TRADES)) == TRADES
    assert _warnings(caplog) == []  # a first replay publishes: nothing to warn about

    # The same recording again (a restarted simulator without --state): every id is already on the topic.
    with BackgroundSimulator(config, records(TRADES)) as sim:
        settings.BINANCE_WS_URL, settings.BINANCE_REST_URL = sim.url, sim.http_url

        def terminate_after_the_warning() -> None:
            wait_for(lambda: bool(_warnings(caplog)), timeout=120, what="the all-duplicates warning")
            os.kill(os.getpid(), signal.SIGTERM)

        killer = threading.Thread(target=terminate_after_the_warning)
        killer.start()
        _ingest()
        killer.join(60)
    (warning,) = _warnings(caplog)  # once, though the stop checks again
    message = warning.getMessage()
    assert f"the topic {kafka_topics.trades} already holds these trade ids" in message
    assert "fresh topic (KAFKA_TRADES_TOPIC)" in message
    assert "--state FILE" in message
    assert len(read_topic(kafka_topics.trades, TRADES)) == TRADES  # nothing more was published


def test_a_short_replay_of_known_ids_warns_when_ingest_stops(
    settings: Any, kafka_topics: KafkaTopics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest")
    config = SimulatorConfig(exchange="binance", speed=0, ping_interval=None)
    with BackgroundSimulator(config, records(50)) as sim:
        settings.BINANCE_WS_URL, settings.BINANCE_REST_URL = sim.url, sim.http_url
        _ingest("--max-trades", "50")
    with BackgroundSimulator(config, records(50)) as sim:
        settings.BINANCE_WS_URL, settings.BINANCE_REST_URL = sim.url, sim.http_url

        def terminate_after_the_duplicates() -> None:
            wait_for(lambda: _duplicates(caplog) >= 50, timeout=120, what="the replay's 50 duplicates")
            os.kill(os.getpid(), signal.SIGTERM)

        killer = threading.Thread(target=terminate_after_the_duplicates)
        killer.start()
        _ingest("--metrics-interval", "0.2")
        killer.join(60)
    (warning,) = _warnings(caplog)
    assert "(50)" in warning.getMessage()


def _duplicates(caplog: pytest.LogCaptureFixture) -> int:
    """The duplicates of the last ``ingest metrics`` line logged."""
    lines = [r for r in caplog.records if r.getMessage() == "ingest metrics"]
    return int(getattr(lines[-1], "metrics", {}).get("duplicates", 0)) if lines else 0
