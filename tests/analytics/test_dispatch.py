"""dispatch_batch on the real Redis broker: per-window tasks on the right queues, coalesced stats refreshes."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings

from analytics.coalesce import claim_stats_refresh
from analytics.dispatch import dispatch_batch
from analytics.windows import SymbolWindow
from tests.conftest import ROOT, manage, subprocess_env


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    from cryptoproject.celery import app

    app.control.purge()
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    yield client
    app.control.purge()


def messages(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """Every message waiting in a queue: task name, args and ETA (kombu's JSON envelope, base64 body)."""
    out = []
    for raw in reversed(client.lrange(queue, 0, -1)):  # kombu LPUSHes: oldest last
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        out.append({"task": message["headers"]["task"], "args": args, "eta": message["headers"].get("eta")})
    return out


def symbol() -> str:
    # Coalescing keys live in Redis for a second: a fresh symbol per test keeps runs apart.
    return f"T{uuid.uuid4().hex[:10].upper()}"


def test_one_task_of_each_kind_per_window_on_its_queue(broker):
    a, b = symbol(), symbol()
    sent = dispatch_batch(
        [
            SymbolWindow("binance", a, 1000, 2000, 500),
            SymbolWindow("kraken", b, 1500, 1600, 3),
            SymbolWindow("binance", "EMPTY", 1, 2, 0),  # nothing stored: nothing to do
        ]
    )
    assert sent == 6
    analytics = messages(broker, "analytics")
    assert [(m["task"], m["args"]) for m in analytics] == [
        ("analytics.tasks.update_candles", ["binance", a, 1000, 2000]),
        ("analytics.tasks.refresh_stats", ["binance", a]),
        ("analytics.tasks.update_candles", ["kraken", b, 1500, 1600]),
        ("analytics.tasks.refresh_stats", ["kraken", b]),
    ]
    assert [(m["task"], m["args"]) for m in messages(broker, "alerts")] == [
        ("analytics.tasks.detect_whales", ["binance", a, 1000, 2000]),
        ("analytics.tasks.detect_whales", ["kraken", b, 1500, 1600]),
    ]
    assert all(m["eta"] is None for m in analytics)


def test_fast_windows_of_one_symbol_coalesce_stats_refreshes(broker, settings):
    settings.STATS_COALESCE_SECONDS = 30
    s = symbol()
    windows = [SymbolWindow("binance", s, i * 100, i * 100 + 99, 10) for i in range(5)]
    assert dispatch_batch(windows) == 5 * 2 + 2
    refreshes = [m for m in messages(broker, "analytics") if m["task"] == "analytics.tasks.refresh_stats"]
    # A leading refresh now, one trailing refresh after the TTL covering the rest, nothing more.
    assert len(refreshes) == 2
    assert refreshes[0]["eta"] is None
    assert refreshes[1]["eta"] is not None
    assert len([m for m in messages(broker, "analytics") if m["task"] == "analytics.tasks.update_candles"]) == 5


def test_claim_edges(settings):
    s = symbol()
    assert claim_stats_refresh("binance", s, ttl_seconds=0) == 0.0
    assert claim_stats_refresh("binance", s, ttl_seconds=20) == 0.0
    assert claim_stats_refresh("binance", s, ttl_seconds=20) == 20.0
    assert claim_stats_refresh("binance", s, ttl_seconds=20) is None
    # Redis unreachable: send the refresh anyway (an extra idempotent task beats a stale row).
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert claim_stats_refresh("binance", symbol(), ttl_seconds=20) == 0.0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STATS_COALESCE_SECONDS": "-1"}, "STATS_COALESCE_SECONDS"),
        ({"CANDLES_PUSH_INTERVAL": "soon"}, "CANDLES_PUSH_INTERVAL"),
        ({"RETENTION_BATCH_SIZE": "0"}, "RETENTION_BATCH_SIZE"),
        ({"ANALYTICS_TASK_MAX_RETRIES": "-2"}, "ANALYTICS_TASK_MAX_RETRIES"),
        ({"CELERY_VISIBILITY_TIMEOUT": "x"}, "CELERY_VISIBILITY_TIMEOUT"),
    ],
)
def test_bad_analytics_setting_stops_a_command_naming_it(env, named):
    result = subprocess.run(
        manage("check"), cwd=ROOT, env=subprocess_env(**env), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {named}:" in result.stderr
