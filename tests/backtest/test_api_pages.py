"""Backtest REST endpoints and dashboard pages through Django's test client, and the form -> Celery worker -> run
page path with a real worker."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest
from django.test import Client

from backtest import runs
from backtest.charts import MAX_CANDLES, run_chart
from backtest.models import BacktestRun
from tests.backtest.helpers import FORM, START, store_candles
from tests.backtest.test_runs import WAVE
from tests.conftest import wait_for
from tests.dashboard.api_factories import locmem_cache

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache", "open_dashboard")]
__all__ = ["locmem_cache"]

BODY = {"strategy": "sma_cross", "symbol": "BTCUSDT", "from": "2024-01-01", "to": "2024-01-03", "params": {"fast": 3}}


@pytest.fixture
def open_dashboard(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False


def done_run(**params: Any) -> BacktestRun:
    run = runs.prepare(
        runs.RunSpec("sma_cross", "binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 3), params)
    )
    run.save()
    runs.execute(run.pk)
    run.refresh_from_db()
    return run


def post(client: Client, body: Any) -> Any:
    return client.post("/api/v1/backtests", json.dumps(body), content_type="application/json")


def test_post_stores_a_pending_run_and_queues_it_after_commit(client: Client, django_capture_on_commit_callbacks):
    store_candles(WAVE)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, BODY)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["params"] == {"fast": 3, "slow": 30}
    assert body["url"] == f"/backtests/{body['id']}/"
    assert body["exchange"] == "binance"
    assert body["interval"] == "1h"
    assert len(callbacks) == 1  # the task is sent only once the row is committed
    assert BacktestRun.objects.get(pk=body["id"]).status == "pending"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"strategy": None}, "strategy"),
        ({"strategy": "nope"}, "strategy"),
        ({"symbol": None}, "symbol"),
        ({"symbol": "BTC USDT"}, "symbol"),
        ({"exchange": "nyse"}, "exchange"),
        ({"interval": "2h"}, "interval"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2023-01-01"}, "to"),
        ({"params": [1]}, "params"),
        ({"params": {"fast": 99}}, "params"),
        ({"cash": "lots"}, "cash"),
        ({"cash": "-1"}, "cash"),
        ({"fee": "Infinity"}, "fee"),
    ],
)
def test_post_errors_name_the_field(client: Client, change: dict[str, Any], param: str):
    body = {**BODY, **change}
    response = post(client, {k: v for k, v in body.items() if v is not None})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert not BacktestRun.objects.exists()


def test_post_of_a_symbol_without_candles_is_refused_up_front(client: Client):
    store_candles(WAVE)  # BTCUSDT 1h
    for body, missing in (
        ({**BODY, "symbol": "NOPEUSDT"}, "1h candles stored for binance:NOPEUSDT"),
        ({**BODY, "interval": "4h"}, "4h candles stored for binance:BTCUSDT"),
    ):
        response = post(client, body)
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["param"] == "symbol"
        assert missing in error["message"]
    assert not BacktestRun.objects.exists()


def test_a_missing_run_is_the_error_envelope(client: Client):
    for path in ("/api/v1/backtests/99999", "/api/v1/backtests/99999/chart"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": {"param": None, "message": "no backtest run 99999", "code": "not_found"}}, (
            path
        )


def test_post_body_must_be_an_object(client: Client):
    response = post(client, [BODY])
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "body"


def test_list_detail_and_strategies(client: Client):
    store_candles(WAVE)
    first, second = done_run(fast=3), done_run(fast=5)
    body = client.get("/api/v1/backtests", {"limit": 1}).json()
    assert [r["id"] for r in body["results"]] == [second.pk]
    assert "equity" not in body["results"][0]
    body = client.get("/api/v1/backtests", {"limit": 1, "cursor": body["cursor"]}).json()
    assert [r["id"] for r in body["results"]] == [first.pk]
    assert body["next"] is None
    detail = client.get(f"/api/v1/backtests/{first.pk}").json()
    assert detail["status"] == "done"
    assert detail["bars"] == 72
    assert len(detail["equity"]) == 72
    assert detail["metrics"]["trades"] == len(detail["trades"])
    assert "equity" not in client.get(f"/api/v1/backtests/{first.pk}", {"curves": "0"}).json()
    assert client.get("/api/v1/backtests/999999").status_code == 404
    names = [s["name"] for s in client.get("/api/v1/backtests/strategies").json()["results"]]
    assert names == ["bollinger_breakout", "ema_cross", "macd_cross", "rsi_reversion", "sma_cross"]


def test_chart_data_is_bounded_and_says_when_the_bars_changed(client: Client, settings: Any):
    store_candles(WAVE)
    run = done_run(fast=3)
    chart = client.get(f"/api/v1/backtests/{run.pk}/chart").json()
    assert chart["bars_changed"] is False
    assert chart["bucket_bars"] == 1
    assert len(chart["candles"]) == 72
    assert chart["candles"][0][0] == int(START.timestamp() * 1000)
    assert chart["equity"][0] == [int(START.timestamp() * 1000), 10000.0]
    # Buy-and-hold: all cash in at the first open (100), valued at each close.
    assert chart["buy_and_hold"][1][1] == pytest.approx(10000 * 110 / 100)
    assert min(d for _, d in chart["drawdown"]) == 0.0
    assert len(chart["trades"]) == run.metrics["trades"]
    # Many bars: candles merge into at most MAX_CANDLES buckets, curves keep the last point and the deepest drawdown.
    many = [str(100 + (i % 50)) for i in range(MAX_CANDLES * 3 + 1)]
    from datetime import timedelta

    store_candles(many, symbol="LONGUSDT", step=timedelta(minutes=1), interval="1m")
    long_run = runs.prepare(runs.RunSpec("sma_cross", "binance", "LONGUSDT", "1m", date(2024, 1, 1), date(2024, 1, 1)))
    long_run.save()
    runs.execute(long_run.pk)
    long_run.refresh_from_db()
    chart = run_chart(long_run)
    assert len(chart["candles"]) <= MAX_CANDLES
    assert chart["bucket_bars"] == 4
    assert chart["equity"][-1] == long_run.equity[-1]
    equity = [e for _, e in long_run.equity]
    peak, deepest = 0.0, 0.0
    for e in equity:
        peak = max(peak, e)
        deepest = max(deepest, 1 - e / peak)
    assert max(d for _, d in chart["drawdown"]) == pytest.approx(deepest)
    # A stored candle changed since the run: the page says so.
    from analytics.models import Candle

    Candle.objects.filter(symbol="BTCUSDT", open_time=START).update(close=1)
    assert client.get(f"/api/v1/backtests/{run.pk}/chart").json()["bars_changed"] is True


def test_chart_of_a_run_without_results_is_empty(client: Client):
    run = runs.prepare(runs.RunSpec("sma_cross", "binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 3)))
    run.save()
    chart = client.get(f"/api/v1/backtests/{run.pk}/chart").json()
    assert chart["candles"] == []
    assert chart["equity"] == []
    assert chart["bars_changed"] is False


def page_config(html: str) -> dict[str, Any]:
    match = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html, re.S)
    assert match
    config: dict[str, Any] = json.loads(match.group(1))
    return config


def test_list_page_shows_runs_and_a_form_with_the_stored_days(client: Client):
    html = client.get("/backtests/").content.decode()
    assert "No backtests yet" in html
    assert 'name="strategy"' in html
    store_candles(WAVE)
    run = done_run(fast=3)
    html = client.get("/backtests/").content.decode()
    assert f'href="/backtests/{run.pk}/"' in html
    assert "sma_cross" in html
    assert 'value="2024-01-01"' in html
    assert 'value="2024-01-03"' in html
    assert next(s["name"] for s in page_config(html)["strategies"]) == "bollinger_breakout"


def test_form_errors_are_shown_and_nothing_is_stored(client: Client):
    form = {**FORM, "params": "fast=50"}
    response = client.post("/backtests/", form)
    assert response.status_code == 200
    assert "must be shorter than slow" in response.content.decode()
    response = client.post("/backtests/", {**form, "params": "fast"})
    assert "expected name=value" in response.content.decode()
    response = client.post("/backtests/", {**form, "params": "", "date_to": "2023-01-01"})
    assert "before the start date" in response.content.decode()
    assert not BacktestRun.objects.exists()


def test_run_page_config(client: Client):
    store_candles(WAVE)
    run = done_run(fast=3)
    response = client.get(f"/backtests/{run.pk}/")
    assert response.status_code == 200
    config = page_config(response.content.decode())
    assert config["run"]["id"] == run.pk
    assert config["run"]["status"] == "done"
    assert "equity" not in config["run"]
    assert client.get("/backtests/999999/").status_code == 404


def test_pages_need_a_login_when_configured(client: Client, settings: Any):
    settings.DASHBOARD_LOGIN_REQUIRED = True
    assert client.get("/backtests/").status_code == 302
    assert client.get("/api/v1/backtests").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_form_starts_a_celery_task_that_a_real_worker_runs(client: Client, celery_worker_process):
    store_candles(WAVE)
    form = {
        "strategy": "ema_cross",
        "params": "fast=3, slow=8",
        "exchange": "binance",
        "symbol": "btcusdt",
        "interval": "1h",
        "date_from": "2024-01-01",
        "date_to": "2024-01-03",
        "cash": "10000",
        "fee": "0.001",
    }
    response = client.post("/backtests/", form)
    assert response.status_code == 302
    run = BacktestRun.objects.get()
    assert response["Location"] == f"/backtests/{run.pk}/"
    assert run.symbol == "BTCUSDT"
    assert run.params == {"fast": 3, "slow": 8}
    wait_for(
        lambda: BacktestRun.objects.get(pk=run.pk).status in ("done", "failed"),
        timeout=60,
        what="the worker to finish the backtest",
    )
    run.refresh_from_db()
    assert run.status == "done", run.error
    assert run.progress == 1.0
    assert run.bars == 72
    assert run.metrics["trades"] >= 1
    assert run.started_at is not None
    assert run.finished_at is not None
    assert run.finished_at >= run.started_at
    polled = client.get(f"/api/v1/backtests/{run.pk}", {"curves": "0"}).json()  # what the run page polls
    assert polled["status"] == "done"
    assert polled["progress"] == 1.0


def test_admin_lists_runs_read_only(client: Client):
    from django.contrib.auth import get_user_model

    store_candles(WAVE)
    run = done_run(fast=3)
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    html = client.get("/admin/backtest/backtestrun/").content.decode()
    assert "sma_cross" in html
    assert f"{run.metrics['total_return']:+.2%}" in html
    html = client.get(f"/admin/backtest/backtestrun/{run.pk}/change/").content.decode()
    assert f'href="/backtests/{run.pk}/"' in html
    assert run.bars_hash in html
    assert client.get("/admin/backtest/backtestrun/add/").status_code == 403
