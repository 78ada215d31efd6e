"""Live inference: when bars of the model's interval close, predict the bar ``horizon`` ahead, in one batch per
symbol; score the predictions whose bar has closed since."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analytics.bars import closes_at
from analytics.models import INTERVAL_SECONDS
from cryptoproject.timeutil import ms_to_datetime
from prediction import learn
from prediction.clock import last_closed_bar
from prediction.features import LIVE_LOOKBACK, feature_matrix, load_last
from prediction.models import Prediction, PredictionModel
from prediction.training import load_artifact


def _dt(ms: int) -> datetime:
    return ms_to_datetime(ms)


def active_models(exchange: str, symbol: str) -> list[PredictionModel]:
    """The models marked active for the pair, any interval and horizon."""
    return list(PredictionModel.objects.filter(exchange=exchange, symbol=symbol, active=True))


def predict_as_of(model: PredictionModel, as_of_ms: int) -> Prediction | None:
    """Predict the bar ``horizon`` after the closed bar ``as_of_ms`` from the candles up to it, and store it
    (idempotent: one row per model and predicted bar). ``None`` when that bar is not stored (yet)."""
    series = load_last(model.exchange, model.symbol, model.interval, _dt(as_of_ms), LIVE_LOOKBACK)
    if len(series) == 0 or int(series.open_time[-1]) != as_of_ms:
        return None
    x = feature_matrix(series, INTERVAL_SECONDS[model.interval] * 1000)[-1:]
    p_up, ret = learn.predict((load_artifact(model)["classifier"], load_artifact(model)["regressor"]), x)
    step = timedelta(seconds=INTERVAL_SECONDS[model.interval] * model.horizon)
    target = _dt(as_of_ms) + step
    prediction, _ = Prediction.objects.update_or_create(
        model=model,
        open_time=target,
        defaults={
            "exchange": model.exchange,
            "symbol": model.symbol,
            "base_time": _dt(as_of_ms),
            "p_up": float(p_up[0]),
            "predicted_return": float(ret[0]),
            "base_close": float(series.close[-1]),
            # A repeated prediction (a re-dispatch, a replay) is scored again against its own values.
            "actual_close": None,
            "correct": None,
            "scored_at": None,
        },
    )
    return prediction


def predict_closed(exchange: str, symbol: str, end_ms: int) -> list[int]:
    """For each active model of the symbol: predict from its newest closed bar, then score what has closed.

    Returns the ids of the predictions made. One call covers every model of the symbol: a batch per symbol.
    """
    made: list[int] = []
    for model in active_models(exchange, symbol):
        prediction = predict_as_of(model, last_closed_bar(model.interval, end_ms))
        if prediction is not None:
            made.append(prediction.pk)
        score_predictions(model, end_ms)
    return made


def score_predictions(model: PredictionModel, end_ms: int) -> int:
    """Set ``actual_close``/``correct`` on the model's predictions whose bar closed by ``end_ms``. Returns how
    many were scored."""
    closed_before = _dt(last_closed_bar(model.interval, end_ms))
    pending = list(
        Prediction.objects.filter(model=model, correct__isnull=True, open_time__lte=closed_before).order_by(
            "open_time"
        )[:1000]
    )
    if not pending:
        return 0
    closes = closes_at(model.exchange, model.symbol, model.interval, [p.open_time for p in pending])
    now = datetime.now(UTC)
    scored = []
    for p in pending:
        close = closes.get(p.open_time)
        if close is None:
            continue  # the bar has no candle (no trade in it): left unscored
        p.actual_close = float(close)
        p.correct = (p.p_up > 0.5) == (p.actual_close > p.base_close)
        p.scored_at = now
        scored.append(p)
    Prediction.objects.bulk_update(scored, ["actual_close", "correct", "scored_at"])
    return len(scored)
