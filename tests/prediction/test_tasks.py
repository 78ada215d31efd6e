"""The ml-queue tasks in-process: retraining over given days, the beat fan-out, the schedule setting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from celery.schedules import crontab

from cryptoproject.celery import app, retrain_schedule
from dashboard.templatetags import prediction_tags
from prediction import live, tasks
from prediction.models import Prediction, PredictionModel


@pytest.mark.django_db
def test_retrain_trains_the_given_days_activates_it_and_reports_the_worker_peak_memory(import_hourly):
    import_hourly("2022-01-01", "2022-02-28")
    out = tasks.retrain("binance", "BTCUSDT", "1h", folds=2, start_day="2022-01-01", end_day="2022-02-27")
    model = PredictionModel.objects.get(pk=out["id"])
    assert model.active
    assert model.train_to == datetime(2022, 2, 27, 23, tzinfo=UTC)
    assert out["peak_rss_kb"] > 0
    assert out["n_test"] == model.overall["n_test"]
    # The task the hook queues: predicts from the last closed bar, and scores what has closed.
    made = tasks.predict_closed("binance", "BTCUSDT", int(datetime(2022, 2, 28, 5, 30, tzinfo=UTC).timestamp() * 1000))
    assert Prediction.objects.get(pk=made[0]).open_time == datetime(2022, 2, 28, 5, tzinfo=UTC)
    assert live.predict_closed("binance", "BTCUSDT", int(datetime(2022, 2, 28, 7, tzinfo=UTC).timestamp() * 1000))
    assert Prediction.objects.get(pk=made[0]).correct is not None


@pytest.mark.django_db
def test_a_retraining_without_enough_candles_fails_naming_it():
    with pytest.raises(ValueError, match="too few"):
        tasks.retrain("binance", "NOPEUSDT", "1h", days=60)


def test_retrain_all_queues_one_task_per_configured_series(settings, monkeypatch):
    settings.PREDICTION_SERIES = ["binance:BTCUSDT:1h", "coinbase:btc-usd:1m"]
    sent: list[tuple[str, ...]] = []
    monkeypatch.setattr(tasks.retrain, "delay", lambda *a: sent.append(a))
    assert tasks.retrain_all() == 2
    assert sent == [("binance", "BTCUSDT", "1h"), ("coinbase", "BTC-USD", "1m")]
    with pytest.raises(ValueError, match="exchange:symbol:interval"):
        tasks.parse_series("binance:BTCUSDT")


def test_the_retrain_schedule_setting_and_the_ml_route():
    schedule = retrain_schedule("17 3 * * 0")
    assert schedule == crontab("17", "3", "0", "*", "*")  # minute, hour, day of week, day of month, month
    assert retrain_schedule("") is None
    with pytest.raises(ValueError, match="5 crontab fields"):
        retrain_schedule("17 3 *")
    assert app.conf.beat_schedule["prediction-retrain"]["task"] == "prediction.tasks.retrain_all"
    assert "ml" in {q.name for q in app.conf.task_queues}
    assert app.amqp.router.route({}, "prediction.tasks.retrain")["queue"].name == "ml"
    assert (tasks.peak_rss_kb() or 0) > 0


def test_template_filters_show_a_dash_when_unknown():
    assert prediction_tags.ms_date(None) == prediction_tags.pct(None) == prediction_tags.signed_pct(None) == "—"
    assert prediction_tags.iso_minute("") == "—"
    assert prediction_tags.ms_date(1646089200000) == "2022-02-28 23:00"
    assert prediction_tags.iso_minute("2022-02-28T23:00:00+00:00") == "2022-02-28 23:00 UTC"
