"""Metrics (JSON snapshot, Prometheus over HTTP, Redis with TTL) and the ingest command's start-up checks."""

from __future__ import annotations

import logging
import re
import socket
import urllib.request
from typing import Any

import orjson
import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from ingest.metrics import IngestMetrics, MetricsReporter, registry_for, serve_prometheus


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def filled() -> IngestMetrics:
    metrics = IngestMetrics("binance")
    metrics.messages_received = 12
    metrics.trades_published = 10
    metrics.malformed = 2
    metrics.first_received_at = 1000.0
    metrics.last_acked_at = 1002.0
    for seconds in (0.002, 0.004, 0.03, 20.0):
        metrics.observe_latency(seconds)
    return metrics


def test_snapshot_and_quantiles() -> None:
    metrics = filled()
    data = metrics.snapshot()
    assert (data["messages_received"], data["trades_published"], data["malformed"]) == (12, 10, 2)
    assert data["throughput_trades_per_s"] == 5.0
    assert data["publish_latency_avg_ms"] == pytest.approx(5009.0)
    assert data["publish_latency_p99_le_ms"] == "inf"
    assert metrics.latency_quantile(0.5) == 0.005
    assert IngestMetrics("x").latency_quantile(0.5) is None
    assert IngestMetrics("x").snapshot()["publish_latency_avg_ms"] is None


def test_prometheus_text_over_http() -> None:
    port = free_port()
    serve_prometheus(filled(), port, addr="127.0.0.1")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'ingest_trades_published_total{exchange="binance"} 10.0' in text
    assert 'ingest_malformed_total{exchange="binance"} 2.0' in text
    assert 'ingest_publish_latency_seconds_bucket{exchange="binance",le="0.005"} 2.0' in text
    assert 'ingest_publish_latency_seconds_count{exchange="binance"} 4.0' in text
    assert "ingest_uptime_seconds" in text


def test_registry_is_private() -> None:
    names = {m.name for m in registry_for(filled()).collect()}
    assert "ingest_gaps" in names
    assert not any(name.startswith("process_") for name in names)


def test_reporter_logs_and_stores_with_ttl(caplog: pytest.LogCaptureFixture) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    reporter = MetricsReporter(filled(), client, interval=0.05)
    with caplog.at_level(logging.INFO, logger="ingest.metrics"):
        reporter.start()
        reporter.stop()
    stored = orjson.loads(client.get(reporter.redis_key) or b"{}")
    assert stored["trades_published"] == 10
    assert 0 < client.ttl(reporter.redis_key) <= 30
    assert any(r.message == "ingest metrics" for r in caplog.records)


def test_reporter_survives_a_redis_outage(caplog: pytest.LogCaptureFixture) -> None:
    reporter = MetricsReporter(filled(), redis.Redis(port=1, socket_connect_timeout=0.5))
    with caplog.at_level(logging.WARNING, logger="ingest.metrics"):
        data = reporter.report()
    assert data["exchange"] == "binance"
    assert any("not stored in Redis" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    ("overrides", "args", "message"),
    [
        ({"BINANCE_WS_URL": "http://stream.binance.com"}, [], "BINANCE_WS_URL"),
        ({"BINANCE_REST_URL": "not a url"}, [], "BINANCE_REST_URL"),
        ({}, ["--max-trades", "0"], "--max-trades"),
        ({}, ["--metrics-port", "70000"], "--metrics-port"),
        ({}, ["--symbols", "btc-usdt"], "--symbols: not a Binance symbol"),
    ],
)
def test_command_refuses_bad_settings(settings: Any, overrides: dict[str, str], args: list[str], message: str) -> None:
    for name, value in overrides.items():
        setattr(settings, name, value)
    argv = ["--exchange", "binance", "--symbols", "btcusdt", *args]
    with pytest.raises(CommandError, match=message):
        call_command("ingest", *argv)


def test_command_names_an_unreachable_broker(settings: Any) -> None:
    settings.KAFKA_BOOTSTRAP_SERVERS = ["127.0.0.1:1"]
    with pytest.raises(CommandError, match=re.escape("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1")):
        call_command("ingest", "--exchange", "coinbase", "--symbols", "BTC-USD", "--metrics-port", "0")


def test_command_refuses_a_metrics_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match=f"--metrics-port {port}"):
            call_command("ingest", "--exchange", "kraken", "--symbols", "BTC/USD", "--metrics-port", str(port))
