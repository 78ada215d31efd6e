"""Ownership of backtest runs and prediction models: own and shared ones visible, another user's a 404, staff see
all; a run started by a user is theirs."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.quotas import QuotaExceeded
from backtest import runs
from backtest.models import BacktestRun
from dashboard.api.errors import api_exception_handler
from prediction.models import Prediction, PredictionModel
from tests.accounts.conftest import api_for, client_for
from tests.backtest.helpers import store_candles
from tests.backtest.test_runs import WAVE

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]

BODY = {"strategy": "sma_cross", "symbol": "BTCUSDT", "from": "2024-01-01", "to": "2024-01-03", "params": {"fast": 3}}
T = datetime(2024, 1, 1, tzinfo=UTC)


def run_of(owner: Any) -> BacktestRun:
    run = runs.prepare(
        runs.RunSpec("sma_cross", "binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 3), {"fast": 3})
    )
    run.owner = owner
    run.save()
    return run


def model_of(owner: Any) -> PredictionModel:
    return PredictionModel.objects.create(
        exchange="binance",
        symbol="BTCUSDT",
        interval="1h",
        train_from=T,
        train_to=T,
        n_bars=10,
        data_hash="0" * 64,
        artifact="/nowhere",
        owner=owner,
    )


@pytest.fixture
def rows(alice: Any, bob: Any) -> dict[str, Any]:
    return {
        "shared_run": run_of(None),
        "alice_run": run_of(alice),
        "bob_run": run_of(bob),
        "shared_model": model_of(None),
        "alice_model": model_of(alice),
        "bob_model": model_of(bob),
    }


def ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.content
    return {r["id"] for r in response.json()["results"]}


def test_the_api_shows_own_and_shared_runs_and_models(rows: dict[str, Any], alice: Any) -> None:
    api = api_for(alice)
    assert ids(api.get("/api/v1/backtests")) == {rows["shared_run"].pk, rows["alice_run"].pk}
    assert ids(api.get("/api/v1/models")) == {rows["shared_model"].pk, rows["alice_model"].pk}
    for key in ("shared_run", "alice_run"):
        assert api.get(f"/api/v1/backtests/{rows[key].pk}").status_code == 200
        assert api.get(f"/api/v1/backtests/{rows[key].pk}/chart").status_code == 200
    assert api.get(f"/api/v1/backtests/{rows['bob_run'].pk}").status_code == 404
    assert api.get(f"/api/v1/backtests/{rows['bob_run'].pk}?curves=0").status_code == 404
    assert api.get(f"/api/v1/backtests/{rows['bob_run'].pk}/chart").status_code == 404
    assert api.get(f"/api/v1/models/{rows['alice_model'].pk}").status_code == 200
    assert api.get(f"/api/v1/models/{rows['bob_model'].pk}").status_code == 404


def test_predictions_of_another_users_model_are_hidden(rows: dict[str, Any], alice: Any) -> None:
    for key in ("shared_model", "bob_model"):
        Prediction.objects.create(
            model=rows[key],
            exchange="binance",
            symbol="BTCUSDT",
            open_time=T,
            base_time=T,
            p_up=0.6,
            predicted_return=0.01,
            base_close=100.0,
        )
    results = api_for(alice).get("/api/v1/predictions").json()["results"]
    assert [r["model"] for r in results] == [rows["shared_model"].pk]


def test_staff_see_all_and_anonymous_only_shared(rows: dict[str, Any], staff: Any, settings: Any) -> None:
    assert len(ids(api_for(staff).get("/api/v1/backtests"))) == 3
    assert len(ids(api_for(staff).get("/api/v1/models"))) == 3
    settings.DASHBOARD_LOGIN_REQUIRED = False
    assert ids(APIClient().get("/api/v1/backtests")) == {rows["shared_run"].pk}
    assert APIClient().get(f"/api/v1/backtests/{rows['alice_run'].pk}").status_code == 404


def test_the_pages_show_own_and_shared_only(rows: dict[str, Any], alice: Any) -> None:
    client = client_for(alice)
    html = client.get("/backtests/").content.decode()
    assert f"/backtests/{rows['alice_run'].pk}/" in html
    assert f"/backtests/{rows['shared_run'].pk}/" in html
    assert f"/backtests/{rows['bob_run'].pk}/" not in html
    assert client.get(f"/backtests/{rows['alice_run'].pk}/").status_code == 200
    assert client.get(f"/backtests/{rows['bob_run'].pk}/").status_code == 404
    assert client.get(f"/models/?id={rows['bob_model'].pk}").status_code == 404


def test_the_models_page_hides_another_users_models(alice: Any, bob: Any) -> None:
    model_of(bob)
    response = client_for(alice).get("/models/")
    assert response.status_code == 200
    assert response.context["models"] == []
    assert response.context["model"] is None


def test_a_run_started_by_a_user_is_theirs(alice: Any, bob: Any, django_capture_on_commit_callbacks: Any) -> None:
    store_candles(WAVE)
    with django_capture_on_commit_callbacks(execute=False):
        response = api_for(alice).post("/api/v1/backtests", json.dumps(BODY), content_type="application/json")
    assert response.status_code == 202, response.content
    run = BacktestRun.objects.get(pk=response.json()["id"])
    assert run.owner == alice
    assert api_for(bob).get(f"/api/v1/backtests/{run.pk}").status_code == 404
    with django_capture_on_commit_callbacks(execute=False):
        page = client_for(bob).post(
            "/backtests/",
            {
                "strategy": "sma_cross",
                "params": "fast=3",
                "exchange": "binance",
                "symbol": "BTCUSDT",
                "interval": "1h",
                "date_from": "2024-01-01",
                "date_to": "2024-01-03",
                "cash": "10000",
                "fee": "0.001",
            },
        )
    assert page.status_code == 302, page.content.decode()[:2000]
    assert BacktestRun.objects.exclude(pk=run.pk).get().owner == bob


def test_an_anonymous_run_is_shared(settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    store_candles(WAVE)
    with django_capture_on_commit_callbacks(execute=False):
        response = Client().post("/api/v1/backtests", json.dumps(BODY), content_type="application/json")
    assert response.status_code == 202
    assert BacktestRun.objects.get().owner is None


def test_a_quota_error_is_the_api_envelope_with_its_status() -> None:
    response = api_exception_handler(QuotaExceeded("strategy", "too many backtests", 429), {})
    assert response is not None
    assert response.status_code == 429
    assert response.data == {"error": {"param": "strategy", "message": "too many backtests", "code": "quota_exceeded"}}
