"""The prediction pages and REST endpoints through Django's test client, on a model trained on real hours."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.test import Client

from prediction import live, summary
from prediction.models import Prediction, PredictionModel
from prediction.summary import equity_paths, verdict_text
from prediction.training import TrainSpec, train

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def open_dashboard(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False


@pytest.fixture
def model(import_hourly) -> PredictionModel:
    import_hourly("2022-01-01", "2022-02-28")
    row, _ = train(TrainSpec("binance", "BTCUSDT", "1h", date(2022, 1, 1), date(2022, 2, 20), folds=2))
    base = int(datetime(2022, 2, 21, tzinfo=UTC).timestamp() * 1000)
    for k in range(6):
        live.predict_as_of(row, base + k * 3_600_000)
    live.score_predictions(row, base + 10 * 3_600_000)
    return row


def test_symbol_page_shows_p_up_with_the_oos_accuracy_the_best_baseline_and_the_live_accuracy(client: Client, model):
    html = client.get("/market/binance/BTCUSDT/").content.decode()
    latest = Prediction.objects.filter(model=model).order_by("-open_time").first()
    assert latest is not None
    assert 'id="prediction-card"' in html
    assert f"{latest.p_up * 100:.1f}%" in html
    base = model.overall["baselines"]
    best = max(base, key=lambda n: base[n]["accuracy"])
    assert f"{model.overall['model']['accuracy'] * 100:.2f}%" in html
    assert f"Best baseline ({best})" in html
    assert f"{base[best]['accuracy'] * 100:.2f}%" in html
    acc, n = summary.live_accuracy(model)
    assert acc is not None
    assert n == 6
    assert 'Live accuracy (last <span id="prediction-live-count">6</span>)' in html
    assert f"{acc * 100:.1f}%" in html
    assert "Out of sample the model" in html
    # No active model for the symbol: no card.
    assert 'id="prediction-card"' not in client.get("/market/binance/ETHUSDT/").content.decode()


def test_models_page_shows_folds_against_baselines_and_the_equity_chart(client: Client, model):
    html = client.get("/models/").content.decode()
    assert f"#{model.pk} binance:BTCUSDT 1h" in html
    assert html.count("<tr><td>") >= 2  # the fold rows
    assert 'id="equity-svg"' in html
    assert "<polyline" in html
    assert (
        verdict_text({"beats": {k: model.overall["verdict"][k] for k in ("always_up", "persistence", "majority")}})
        in html
    )
    assert client.get(f"/models/?id={model.pk}").status_code == 200
    assert client.get("/models/?id=999999").status_code == 404


def test_models_page_without_models(client: Client):
    html = client.get("/models/").content.decode()
    assert "No model yet" in html


def test_rest_endpoints_list_models_and_predictions(client: Client, model):
    body = client.get("/api/v1/models?symbol=btcusdt&active=true").json()
    assert [m["id"] for m in body["results"]] == [model.pk]
    item = body["results"][0]
    assert item["data_hash"] == model.data_hash
    assert item["best_baseline"] in ("always_up", "persistence", "majority")
    assert client.get("/api/v1/models?active=false").json()["results"] == []
    full = client.get(f"/api/v1/models/{model.pk}").json()
    assert len(full["folds"]) == 2
    assert "equity" in full["backtest"]
    assert full["overall"]["verdict"]
    missing = client.get("/api/v1/models/999999")
    assert missing.status_code == 404
    # Django's get_object_or_404 too answers in the API's error envelope.
    assert missing.json() == {"error": {"param": None, "message": "Not found.", "code": "not_found"}}
    preds = client.get(f"/api/v1/predictions?exchange=binance&symbol=BTCUSDT&model={model.pk}&limit=3").json()
    assert len(preds["results"]) == 3
    times = [p["open_time"] for p in preds["results"]]
    assert times == sorted(times, reverse=True)
    assert sum(p["correct"] is not None for p in client.get("/api/v1/predictions").json()["results"]) == 6


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/api/v1/models?active=maybe", "active"),
        ("/api/v1/models?exchange=nope", "exchange"),
        ("/api/v1/predictions?model=x", "model"),
        ("/api/v1/predictions?limit=0", "limit"),
        ("/api/v1/predictions?symbol=BAD%20SYMBOL", "symbol"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(client: Client, url, param):
    response = client.get(url)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_verdict_and_chart_helpers():
    assert verdict_text({}) == ""
    assert "does NOT beat the naive" in verdict_text({"beats": {"always_up": {"accuracy": False, "log_loss": True}}})
    assert "On log loss it beats them all" in verdict_text(
        {"beats": {"always_up": {"accuracy": True, "log_loss": True}}}
    )
    mixed = verdict_text({"beats": {"always_up": {"accuracy": True}, "majority": {"accuracy": False}}})
    assert "beats always_up but does NOT beat majority" in mixed
    assert equity_paths({"equity": [[0, 1.0]], "buy_and_hold_equity": []}) is None


def test_no_page_or_endpoint_shows_the_artifact_path(client: Client, model, artifact_dir):
    """Model files are named, never located: no filesystem path reaches a user."""
    assert str(artifact_dir) in model.artifact  # where the file really is
    for url in (
        "/models/",
        f"/models/?id={model.pk}",
        "/api/v1/models",
        f"/api/v1/models/{model.pk}",
        "/market/binance/BTCUSDT/",
    ):
        text = client.get(url).content.decode()
        assert str(artifact_dir) not in text, url
        assert "/models/binance-" not in text, url
    item = client.get(f"/api/v1/models/{model.pk}").json()
    assert "artifact" not in item
    assert item["artifact_name"] == model.artifact.rsplit("/", 1)[1]
