"""Live inference: no leakage, scoring once the bar closes, one dispatch per closed bar, a real worker on ``ml``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.core.cache import cache

from analytics import tasks as analytics_tasks
from analytics.models import Candle, Trade
from prediction import live, summary
from prediction.clock import last_closed_bar
from prediction.features import feature_matrix, load_series
from prediction.models import Prediction, PredictionModel
from prediction.signals import claim_key, dispatch_inference
from prediction.training import TrainSpec, train
from tests.conftest import wait_for

HOUR_MS = 3_600_000


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@pytest.fixture
def model(import_hourly) -> PredictionModel:
    """A model trained on 2021-11..2022-01; February's candles are there too, as the live bars."""
    import_hourly("2021-11-01", "2022-02-28")
    row, _ = train(TrainSpec("binance", "BTCUSDT", "1h", date(2021, 11, 1), date(2022, 1, 31), folds=2))
    return row


@pytest.mark.django_db
def test_live_predictions_up_to_t_are_the_same_whether_or_not_later_candles_exist(model):
    as_of = [ms(datetime(2022, 2, d, h, tzinfo=UTC)) for d, h in ((27, 5), (20, 13), (10, 0), (3, 22))]
    with_future = {t: live.predict_as_of(model, t) for t in as_of}
    assert all(p is not None for p in with_future.values())
    for t in as_of:  # newest first: each step deletes every candle after T
        Candle.objects.filter(symbol="BTCUSDT", open_time__gt=datetime.fromtimestamp(t / 1000, UTC)).delete()
        again, before = live.predict_as_of(model, t), with_future[t]
        assert again is not None
        assert before is not None
        assert again.pk == before.pk  # the same row (idempotent)
        assert (again.p_up, again.predicted_return) == (before.p_up, before.predicted_return)
        assert again.open_time == datetime.fromtimestamp((t + HOUR_MS) / 1000, UTC)


@pytest.mark.django_db
def test_live_features_over_the_lookback_match_the_whole_history(model):
    """Live inference reads the last LIVE_LOOKBACK bars only: the row it predicts from equals the full-history
    row the model was validated on (the EMA/RSI recursions have forgotten their seed)."""
    series = load_series(
        "binance", "BTCUSDT", "1h", datetime(2021, 11, 1, tzinfo=UTC), datetime(2022, 3, 1, tzinfo=UTC)
    )
    full = feature_matrix(series)
    t = int(series.open_time[-30])
    window = live.load_last("binance", "BTCUSDT", "1h", datetime.fromtimestamp(t / 1000, UTC))
    # Within 1e-9: the EMA gap (close / EMA - 1) differs by ~6e-11 after 500 bars, nothing else at all.
    np.testing.assert_allclose(feature_matrix(window)[-1], full[-30], rtol=0, atol=1e-9)


@pytest.mark.django_db
def test_predictions_are_scored_once_their_bar_closes(model):
    base = ms(datetime(2022, 2, 10, 0, tzinfo=UTC))
    for k in range(5):
        live.predict_as_of(model, base + k * HOUR_MS)
    # At 02:30 the bars up to 01:00 are closed: the predictions of 01:00 (made at 00:00) is scored, no later one.
    assert live.score_predictions(model, base + 2 * HOUR_MS + 1_800_000) == 1
    scored = Prediction.objects.get(model=model, correct__isnull=False)
    close = Candle.objects.get(symbol="BTCUSDT", interval="1h", open_time=scored.open_time).close
    assert scored.actual_close == float(close)
    assert scored.correct == ((scored.p_up > 0.5) == (float(close) > scored.base_close))
    assert live.score_predictions(model, base + 10 * HOUR_MS) == 4
    acc, n = summary.live_accuracy(model)
    assert n == 5
    assert acc == sum(1 for p in Prediction.objects.filter(model=model) if p.correct) / 5
    assert summary.live_accuracy(model, window=2)[1] == 2
    # Predicting a bar again (a re-dispatch) scores it again, against the values now stored.
    again = live.predict_as_of(model, base)
    assert again is not None
    assert again.correct is None
    assert live.score_predictions(model, base + 10 * HOUR_MS) == 1
    assert summary.live_accuracy(model) == (acc, 5)
    # A bar without a candle stays unscored.
    Prediction.objects.create(
        model=model, exchange="binance", symbol="BTCUSDT", open_time=datetime(2023, 1, 1, tzinfo=UTC),
        base_time=datetime(2022, 12, 31, 23, tzinfo=UTC), p_up=0.6, predicted_return=0.0, base_close=1.0,
    )  # fmt: skip
    assert live.score_predictions(model, ms(datetime(2023, 1, 2, tzinfo=UTC))) == 0


@pytest.mark.django_db
def test_no_prediction_without_the_closed_bar_or_without_an_active_model(model):
    assert live.predict_as_of(model, ms(datetime(2023, 5, 1, tzinfo=UTC))) is None
    assert live.predict_as_of(model, ms(datetime(2022, 2, 10, 0, 30, tzinfo=UTC))) is None  # not a bar start
    PredictionModel.objects.update(active=False)
    assert live.predict_closed("binance", "BTCUSDT", ms(datetime(2022, 2, 10, tzinfo=UTC))) == []


def test_last_closed_bar():
    assert last_closed_bar("1h", ms(datetime(2022, 2, 10, 5, 59, tzinfo=UTC))) == ms(
        datetime(2022, 2, 10, 4, tzinfo=UTC)
    )
    assert last_closed_bar("1h", ms(datetime(2022, 2, 10, 5, tzinfo=UTC))) == ms(datetime(2022, 2, 10, 4, tzinfo=UTC))


@pytest.mark.django_db
def test_the_hook_dispatches_once_per_symbol_and_closed_bar(model, monkeypatch):
    sent: list[tuple] = []
    monkeypatch.setattr("prediction.tasks.predict_closed.delay", lambda *a: sent.append(a))
    t0 = ms(datetime(2022, 3, 1, 0, 5, tzinfo=UTC))
    for closed in (t0 - 5 * 60_000 - HOUR_MS, t0 - 5 * 60_000):
        cache.delete(claim_key("binance", "BTCUSDT", "1h", closed))
    # Many candle updates inside the 00:00 bar: one inference (for the closed 23:00 bar), never one per update.
    results = [dispatch_inference(None, "binance", "BTCUSDT", t0 + i, t0 + i + 1000) for i in range(0, 60_000, 6000)]
    assert results.count(True) == 1
    assert len(sent) == 1
    # The next bar's first update dispatches again; a symbol without an active model never does.
    assert dispatch_inference(None, "binance", "BTCUSDT", t0 + HOUR_MS, t0 + HOUR_MS)
    assert not dispatch_inference(None, "binance", "ETHUSDT", t0 + HOUR_MS, t0 + HOUR_MS)
    assert len(sent) == 2


def _trades(start: datetime, n: int, first_id: int) -> list[Trade]:
    return [
        Trade(
            exchange="binance",
            symbol="BTCUSDT",
            trade_id=first_id + i,
            price=Decimal("43160.00") + i,
            quantity=Decimal("0.01"),
            is_buyer_maker=bool(i % 2),
            traded_at=start + timedelta(seconds=30 * i),
            received_at=start + timedelta(seconds=30 * i),
        )
        for i in range(n)
    ]


@pytest.mark.django_db(transaction=True)
def test_candle_updates_in_a_real_worker_predict_on_the_ml_queue_and_score(model, celery_worker_process):
    """The live path end to end: trades -> update_candles (analytics queue) -> predict_closed (ml queue)."""
    start = datetime(2022, 3, 1, tzinfo=UTC)
    for hour in range(-1, 3):
        cache.delete(claim_key("binance", "BTCUSDT", "1h", ms(start) + hour * HOUR_MS))
    for hour in range(2):
        bar = start + timedelta(hours=hour)
        Trade.objects.bulk_create(_trades(bar, 10, 1_000_000 + hour * 100))
        analytics_tasks.update_candles.delay("binance", "BTCUSDT", ms(bar), ms(bar) + 9 * 30_000)
        wait_for(
            lambda b=bar: Prediction.objects.filter(model=model, open_time=b).exists(),  # type: ignore[misc]
            timeout=120,
            what=f"the prediction of the {bar:%H:%M} bar",
        )
    first = Prediction.objects.get(model=model, open_time=start)
    assert first.base_time == start - timedelta(hours=1)  # from the last imported bar, 2022-02-28 23:00
    wait_for(lambda: Prediction.objects.get(pk=first.pk).correct is not None, timeout=60, what="scoring")
    first.refresh_from_db()
    assert first.actual_close == float(Candle.objects.get(symbol="BTCUSDT", interval="1h", open_time=start).close)
    assert Prediction.objects.filter(model=model).count() == 2
    assert "prediction.tasks.predict_closed" in celery_worker_process.output()
