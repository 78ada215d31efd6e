"""Backtests are bounded (review of issue 22): their own Celery queue, a cap on bars per run, on runs waiting or running
per user and on starts per minute, and every number of a run within sane finite bounds (400 naming it)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from backtest.models import BacktestRun
from cryptoproject.celery import app
from cryptoproject.queues import CeleryQueue
from tests.backtest.helpers import FORM, store_candles
from tests.backtest.test_runs import WAVE
from tests.conftest import ROOT
from tests.dashboard.api_factories import locmem_cache

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]
__all__ = ["locmem_cache"]

BODY = {"strategy": "sma_cross", "symbol": "BTCUSDT", "from": "2024-01-01", "to": "2024-01-03", "params": {"fast": 3}}


def post(client: Client, body: Any) -> Any:
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.post("/api/v1/backtests", raw, content_type="application/json")


def signed_in(name: str) -> tuple[Client, AbstractBaseUser]:
    user = get_user_model().objects.create_user(name, password=f"pw-{name}-123")
    client = Client()
    client.force_login(user)
    return client, user


@pytest.fixture
def candles() -> None:
    store_candles(WAVE)  # binance BTCUSDT 1h, 2024-01-01 .. 2024-01-03


def test_backtests_have_a_queue_of_their_own_with_a_dedicated_worker() -> None:
    route = app.amqp.router.route({}, "backtest.tasks.run_backtest", (), {})
    assert route["queue"].name == CeleryQueue.BACKTEST == "backtest"
    for procfile in ("Procfile", "Procfile.live"):
        workers = re.findall(r"celery -A cryptoproject worker -Q (\S+)", (ROOT / procfile).read_text())
        assert "backtest" in workers, procfile  # a worker that takes nothing else: a long run delays no candle
        assert all("analytics" not in w.split(",") for w in workers if "backtest" in w.split(","))


@pytest.mark.usefixtures("candles")
def test_a_run_over_the_bar_cap_is_a_400_naming_the_range(client: Client, settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    settings.BACKTEST_MAX_BARS = 100
    response = post(client, {**BODY, "to": "2024-01-05"})  # 5 days of 1h bars: 120
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == "to"
    assert "BACKTEST_MAX_BARS" in error["message"]
    assert "120" in error["message"]
    assert post(client, BODY).status_code == 202  # 72 bars


@pytest.mark.usefixtures("candles")
def test_runs_waiting_or_running_are_capped_per_user(settings: Any, django_capture_on_commit_callbacks) -> None:
    settings.BACKTEST_MAX_CONCURRENT_PER_USER = 2
    alice, alice_user = signed_in("alice")
    bob, _ = signed_in("bob")
    with django_capture_on_commit_callbacks(execute=False):
        assert post(alice, BODY).status_code == 202
        assert post(alice, BODY).status_code == 202
        refused = post(alice, BODY)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_runs"
        assert "2" in refused.json()["error"]["message"]
        assert post(bob, BODY).status_code == 202  # another user's budget
        # A finished run frees its place.
        BacktestRun.objects.filter(owner_id=alice_user.pk).update(status=BacktestRun.Status.DONE)
        assert post(alice, BODY).status_code == 202
        # The dashboard form takes the same budget.
        post(alice, BODY)
        page = alice.post("/backtests/", FORM)
    assert page.status_code == 200
    assert "waiting or running" in page.content.decode()
    assert BacktestRun.objects.filter(owner_id=alice_user.pk).exclude(status="done").count() == 2


@pytest.mark.usefixtures("candles")
def test_starting_runs_is_rate_limited_per_user(settings: Any, django_capture_on_commit_callbacks) -> None:
    settings.API_THROTTLE_BACKTEST = "2/min"
    alice, _ = signed_in("alice")
    with django_capture_on_commit_callbacks(execute=False):
        assert post(alice, BODY).status_code == 202
        assert post(alice, BODY).status_code == 202
        refused = post(alice, BODY)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert alice.get("/api/v1/backtests").status_code == 200  # reading is not limited by it


@pytest.mark.usefixtures("candles")
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**BODY, "cash": 1e30}, "cash"),
        ({**BODY, "cash": "1e-9"}, "cash"),
        ({**BODY, "cash": "0.5"}, "cash"),
        ({**BODY, "fee": "0.9"}, "fee"),
        ({**BODY, "params": {"fast": 3, "slow": 1e300}}, "params.slow"),
        ({**BODY, "params": {"fast": -(10**30)}}, "params.fast"),
        (json.dumps(BODY).replace('{"fast": 3}', '{"fast": 1e400}'), "params.fast"),
        ({**BODY, "strategy": "rsi_reversion", "params": {"low": 1e308}}, "params.low"),
    ],
)
def test_numbers_out_of_sane_bounds_are_a_400_naming_them(client: Client, settings: Any, body: Any, param: str) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    response = post(client, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert not BacktestRun.objects.exists()
