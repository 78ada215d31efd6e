"""The cache (Redis) holds JSON, never pickles: a value someone wrote to Redis is never run, on the real Redis."""

from __future__ import annotations

import pathlib
import pickle
import uuid
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import cache
from django.test import Client
from rest_framework.throttling import SimpleRateThrottle

from cryptoproject.cache_serializer import UnreadableCacheValueError
from dashboard.api import throttling

pytestmark = pytest.mark.django_db


class _RunsOnUnpickle:
    """A pickle that creates a file when loaded: what an attacker with Redis access would write, made harmless."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


def raw_redis() -> redis.Redis:
    return redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])


def test_a_pickle_written_to_redis_is_never_run(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "ran"
    key = f"probe-{uuid.uuid4().hex}"
    raw_redis().set(cache.make_and_validate_key(key), pickle.dumps(_RunsOnUnpickle(marker)), ex=60)
    with pytest.raises(UnreadableCacheValueError):
        cache.get(key)
    assert not marker.exists()


def test_the_cache_round_trips_what_the_project_stores() -> None:
    key = f"probe-{uuid.uuid4().hex}"
    cache.set(key, [1765100000.25, 1765100001.5], 60)  # a throttle's history
    assert cache.get(key) == [1765100000.25, 1765100001.5]
    assert cache.add(f"{key}-n", 1, 60)  # a claim (prediction.signals, accounts.signup)
    assert not cache.add(f"{key}-n", 1, 60)
    assert cache.incr(f"{key}-n") == 2
    assert raw_redis().get(cache.make_and_validate_key(f"{key}-n")) == b"2"  # a plain Redis integer
    with pytest.raises(TypeError):
        cache.set(f"{key}-d", Decimal("1.5"), 60)  # JSON cannot carry it: refused, never pickled


@pytest.mark.usefixtures("open_api")
def test_throttles_count_in_redis_and_fail_open_on_an_unreadable_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "2/min", "user": "100/min"})
    # The warning is logged at most every 10 s per process: this test's must neither be swallowed nor swallow others'.
    monkeypatch.setattr(throttling, "_last_logged", 0.0)
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    cache.delete(f"throttle_anon_{address}")
    client = Client(REMOTE_ADDR=address)
    assert [client.get("/api/v1/symbols").status_code for _ in range(3)] == [200, 200, 429]
    raw_redis().set(cache.make_and_validate_key(f"throttle_anon_{address}"), b"\x80\x05not json", ex=60)
    assert client.get("/api/v1/symbols").status_code == 200
    assert "API throttle cache unavailable" in caplog.text
    cache.delete(f"throttle_anon_{address}")


@pytest.fixture
def open_api(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
