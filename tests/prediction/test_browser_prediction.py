"""The prediction card and the models page in headless Chromium (Debian's, driven by Playwright), with
screenshots to ``artifacts/screenshots/`` (prediction-symbol.png, prediction-models.png)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from typing import Any

import pytest

from prediction import live
from prediction.models import Prediction, PredictionModel
from prediction.training import TrainSpec, train
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/stack.sh install)"),
]


@pytest.fixture
def model(import_hourly, settings: Any) -> PredictionModel:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    import_hourly("2021-09-01", "2022-02-28")
    row, _ = train(TrainSpec("binance", "BTCUSDT", "1h", date(2021, 9, 1), date(2022, 2, 20)))
    base = int(datetime(2022, 2, 21, tzinfo=UTC).timestamp() * 1000)
    for k in range(7 * 24):  # a week of live predictions, scored as their bars closed
        live.predict_as_of(row, base + k * 3_600_000)
    live.score_predictions(row, base + 8 * 24 * 3_600_000)
    return row


def _next_bar_prediction(model: PredictionModel) -> None:
    Prediction.objects.create(
        model=model, exchange="binance", symbol="BTCUSDT", open_time=datetime(2022, 3, 1, tzinfo=UTC),
        base_time=datetime(2022, 2, 28, 23, tzinfo=UTC), p_up=0.9876, predicted_return=0.001, base_close=1.0,
    )  # fmt: skip


def test_prediction_card_and_models_page_render_in_chromium(live_server, model):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # bypass_csp: wait_for_function evaluates its expression with eval, which the pages' CSP refuses; the
            # pages under the policy are tests/dashboard/test_csp.py's.
            page = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True).new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{live_server.url}/market/binance/BTCUSDT/?interval=1h")
            card = page.locator("#prediction-card")
            card.wait_for()
            assert "%" in page.inner_text("#prediction-p-up")
            assert "%" in page.inner_text("#prediction-live")
            assert "Out of sample the model" in page.inner_text("#prediction-verdict")
            page.wait_for_timeout(500)  # let the chart paint
            page.screenshot(path=str(SCREENSHOTS / "prediction-symbol.png"), full_page=True)
            # A new bar's prediction reaches the open page without a reload (the card polls the API).
            # (from another thread: Playwright's sync API runs an event loop in this one, and Django refuses ORM
            # calls from a thread with a running loop)
            writer = threading.Thread(target=_next_bar_prediction, args=(model,))
            writer.start()
            writer.join()
            page.wait_for_function("document.getElementById('prediction-p-up').textContent === '98.8%'", timeout=45_000)
            assert page.inner_text("#prediction-bar") == "2022-03-01 00:00 UTC"

            page.goto(f"{live_server.url}/models/")
            page.locator("#equity-svg").wait_for()
            assert page.locator("#fold-table tbody tr").count() == 6  # 5 folds and the total
            assert page.locator("#equity-svg polyline").count() == 2
            page.screenshot(path=str(SCREENSHOTS / "prediction-models.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
