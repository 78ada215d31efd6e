"""``manage.py ingest`` in this process against the in-process simulator: limit, Prometheus, SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
import urllib.request
from typing import Any

import orjson
import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from ingest.client import WsClient
from ingest.records import decode
from simulator.config import SimulatorConfig
from simulator.server import BackgroundSimulator
from tests.conftest import KafkaTopics, wait_for
from tests.faults import FrozenKafka
from tests.ingest.pipeline import read_topic
from tests.ingest.test_client import records
from tests.ingest.test_metrics_command import free_port

pytestmark = pytest.mark.integration


def test_command_publishes_up_to_the_limit_and_serves_metrics(settings: Any, kafka_topics: KafkaTopics) -> None:
    port = free_port()
    scraped: list[str] = []
    before = signal.getsignal(signal.SIGTERM)  # coverage may have its own handler installed
    with BackgroundSimulator(SimulatorConfig(exchange="binance", speed=0, ping_interval=None), records(2000)) as sim:
        settings.BINANCE_WS_URL = sim.url
        settings.BINANCE_REST_URL = sim.http_url

        def scrape() -> None:
            # Prometheus answers while ingest runs (the server thread lives as long as the process).
            def ok() -> bool:
                try:
                    scraped.append(
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                    )
                except OSError:
                    return False
                return True

            wait_for(ok, timeout=60, interval=0.1, what="the metrics endpoint")

        scraper = threading.Thread(target=scrape)
        scraper.start()
        call_command(
            "ingest",
            "--exchange",
            "binance",
            "--symbols",
            "btcusdt",
            "--channels",
            "trades",
            "--max-trades",
            "1500",
            "--metrics-port",
            str(port),
        )
        scraper.join(60)
    assert len(read_topic(kafka_topics.trades, 1500)) == 1500
    assert "ingest_trades_published_total" in scraped[0]
    assert signal.getsignal(signal.SIGTERM) is before  # the command put the handlers back
    snapshot = orjson.loads(redis.Redis.from_url(django_settings.REDIS_URL).get("metrics:ingest:binance") or b"{}")
    assert snapshot["trades_published"] == 1500


def test_sigterm_stops_the_command_cleanly(settings: Any, kafka_topics: KafkaTopics) -> None:
    config = SimulatorConfig(exchange="binance", speed=0, ping_interval=None, loop=True)
    with BackgroundSimulator(config, records(3000)) as sim:
        settings.BINANCE_WS_URL = sim.url
        settings.BINANCE_REST_URL = sim.http_url

        def terminate_when_flowing() -> None:
            read_topic(kafka_topics.trades, 100)
            os.kill(os.getpid(), signal.SIGTERM)

        killer = threading.Thread(target=terminate_when_flowing)
        killer.start()
        call_command(
            "ingest", "--exchange", "binance", "--symbols", "btcusdt", "--channels", "trades", "--metrics-port", "0"
        )
        killer.join(60)
    published = [decode(v) for _k, v in read_topic(kafka_topics.trades, 100)]
    ids = sorted(r.trade_id for r in published)
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing lost up to the stop


def test_a_dead_thread_makes_the_command_fail(
    settings: Any, kafka_topics: KafkaTopics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: every connection loop raises. Ingest once let the thread die and exited 0;
    # now it must fail loudly.
    def broken_run(_self: object) -> None:
        raise RuntimeError("injected connection failure")

    monkeypatch.setattr(WsClient, "run", broken_run)
    settings.BINANCE_WS_URL = "ws://127.0.0.1:9"
    settings.BINANCE_REST_URL = "http://127.0.0.1:9"
    with pytest.raises(CommandError, match=r"a thread died .*RuntimeError: injected connection failure"):
        call_command(
            "ingest", "--exchange", "binance", "--symbols", "btcusdt", "--channels", "trades", "--metrics-port", "0"
        )


def test_sigterm_with_kafka_away_exits_non_zero_and_says_how_many(settings: Any, kafka_topics: KafkaTopics) -> None:
    settings.INGEST_SHUTDOWN_TIMEOUT = 1
    frozen = FrozenKafka()
    config = SimulatorConfig(exchange="binance", speed=0, max_rate=500, ping_interval=None, loop=True)
    store = redis.Redis.from_url(django_settings.REDIS_URL)
    store.delete("metrics:ingest:binance")

    def buffered() -> int:
        return int(orjson.loads(store.get("metrics:ingest:binance") or b"{}").get("buffered", 0))

    try:
        with BackgroundSimulator(config, records(3000)) as sim:
            settings.BINANCE_WS_URL = sim.url
            settings.BINANCE_REST_URL = sim.http_url

            def freeze_then_terminate() -> None:
                read_topic(kafka_topics.trades, 100)
                frozen.freeze()  # nothing is acknowledged from now on
                wait_for(lambda: buffered() > 0, timeout=60, what="ingest to hold unacknowledged trades")
                os.kill(os.getpid(), signal.SIGTERM)

            killer = threading.Thread(target=freeze_then_terminate)
            killer.start()
            with pytest.raises(
                CommandError, match=r"\d+ records not delivered to Kafka within INGEST_SHUTDOWN_TIMEOUT=1 s"
            ):
                call_command(
                    "ingest",
                    "--exchange",
                    "binance",
                    "--symbols",
                    "btcusdt",
                    "--channels",
                    "trades",
                    "--metrics-port",
                    "0",
                    "--metrics-interval",
                    "0.2",
                )
            killer.join(60)
    finally:
        frozen.thaw()
