"""What the pages and the API show of the models and their predictions (plain dicts, no HTTP)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.db.models import Max

from analytics.models import INTERVAL_SECONDS
from prediction.models import BASELINES, Prediction, PredictionModel

# The equity chart of the models page: an inline SVG, drawn server-side (no script needed to read it).
CHART_W, CHART_H, PAD = 900.0, 260.0, 8.0


def model_item(model: PredictionModel, full: bool = False) -> dict[str, Any]:
    """One registry row; ``full`` adds the per-fold report and the equity curves."""
    overall = model.overall or {}
    base = overall.get("baselines", {})
    best = max(base, key=lambda n: base[n]["accuracy"]) if base else None
    item: dict[str, Any] = {
        "id": model.pk,
        "url": f"/models/?id={model.pk}",
        "exchange": model.exchange,
        "symbol": model.symbol,
        "interval": model.interval,
        "horizon": model.horizon,
        "features": model.features,
        "params": model.params,
        "train_from": model.train_from.isoformat(),
        "train_to": model.train_to.isoformat(),
        "n_bars": model.n_bars,
        "data_hash": model.data_hash,
        # The file's name only: where models are stored on the server is nobody's business but the operator's.
        "artifact_name": PurePath(model.artifact).name,
        "training_seconds": model.training_seconds,
        "created_at": model.created_at.isoformat() if model.created_at else None,
        "active": model.active,
        "accuracy": overall.get("model", {}).get("accuracy"),
        "log_loss": overall.get("model", {}).get("log_loss"),
        "best_baseline": best,
        "best_baseline_accuracy": base[best]["accuracy"] if best else None,
        "beats": {n: overall.get("verdict", {}).get(n) for n in BASELINES if n in base},
        "model_total_return": (model.backtest or {}).get("model_total_return"),
        "buy_and_hold_return": (model.backtest or {}).get("buy_and_hold_return"),
    }
    if full:
        item["folds"] = model.folds
        item["overall"] = overall
        item["backtest"] = model.backtest
    return item


def prediction_item(p: Prediction) -> dict[str, Any]:
    """A prediction as JSON-safe fields (times ISO 8601; ``actual_close`` and ``correct`` None until scored)."""
    return {
        "id": p.pk,
        "model": p.model_id,
        "exchange": p.exchange,
        "symbol": p.symbol,
        "open_time": p.open_time.isoformat(),
        "base_time": p.base_time.isoformat(),
        "p_up": p.p_up,
        "predicted_return": p.predicted_return,
        "base_close": p.base_close,
        "actual_close": p.actual_close,
        "correct": p.correct,
        "created_at": p.created_at.isoformat() if p.created_at else None,
    }


def verdict_text(item: dict[str, Any]) -> str:
    """The plain statement of the pages: which baselines the model beats out of sample, on accuracy and on log
    loss (a probability no better calibrated than the baselines' frequencies is said so too)."""
    beats = item.get("beats") or {}
    if not beats:
        return ""
    won = [n for n, v in beats.items() if v and v.get("accuracy")]
    lost = [n for n, v in beats.items() if not (v and v.get("accuracy"))]
    if not lost:
        text = f"Out of sample the model beats every naive baseline on accuracy ({', '.join(won)})."
    elif not won:
        text = "Out of sample the model does NOT beat the naive baselines on accuracy: its calls are no better."
    else:
        text = f"Out of sample the model beats {', '.join(won)} but does NOT beat {', '.join(lost)} on accuracy."
    worse = [n for n, v in beats.items() if not (v and v.get("log_loss"))]
    if worse:
        text += f" On log loss it does NOT beat {', '.join(worse)}: its probabilities are not better calibrated."
    else:
        text += " On log loss it beats them all too."
    return text


def symbol_summary(exchange: str, symbol: str) -> dict[str, Any] | None:
    """The symbol page's prediction card: the active model's next-bar P(up), its out-of-sample accuracy, the best
    baseline's, and the realised live accuracy. ``None`` when no model is active for the symbol."""
    models = list(
        PredictionModel.objects.filter(exchange=exchange, symbol=symbol, active=True).annotate(
            latest=Max("predictions__open_time")
        )
    )
    if not models:
        return None
    # The model predicting most recently (live inference reaches a 1m model long before an 1h one), else the
    # longest interval.
    oldest = datetime.min.replace(tzinfo=UTC)
    model = max(models, key=lambda m: (m.latest or oldest, INTERVAL_SECONDS[m.interval]))
    item = model_item(model)
    latest = Prediction.objects.filter(model=model).order_by("-open_time").first()
    live_acc, live_n = live_accuracy(model)
    return {
        "model": item,
        "prediction": prediction_item(latest) if latest else None,
        "live_accuracy": live_acc,
        "live_count": live_n,
        "window": settings.PREDICTION_LIVE_WINDOW,
        "verdict": verdict_text(item),
    }


def live_accuracy(model: PredictionModel, window: int | None = None) -> tuple[float | None, int]:
    """The realised accuracy over the latest ``window`` scored predictions, and how many there were."""
    window = window or settings.PREDICTION_LIVE_WINDOW
    outcomes = list(
        Prediction.objects.filter(model=model, correct__isnull=False)
        .order_by("-open_time")
        .values_list("correct", flat=True)[:window]
    )
    if not outcomes:
        return None, 0
    return sum(1 for c in outcomes if c) / len(outcomes), len(outcomes)


def _scale(values: list[float], lo: float, hi: float, size: float, invert: bool) -> list[float]:
    span = hi - lo or 1.0
    out = [(v - lo) / span * (size - 2 * PAD) + PAD for v in values]
    return [size - v for v in out] if invert else out


def equity_paths(backtest: dict[str, Any]) -> dict[str, Any] | None:
    """SVG polyline points of the model's equity and buy-and-hold's, on one log scale (returns compound)."""
    model, hold = backtest.get("equity") or [], backtest.get("buy_and_hold_equity") or []
    if len(model) < 2 or len(hold) < 2:
        return None
    times = [p[0] for p in model] + [p[0] for p in hold]
    logs_m = [math.log(max(p[1], 1e-9)) for p in model]
    logs_h = [math.log(max(p[1], 1e-9)) for p in hold]
    lo, hi = min(logs_m + logs_h), max(logs_m + logs_h)
    t0, t1 = min(times), max(times)

    def points(series: list[list[float]], logs: list[float]) -> str:
        xs = _scale([p[0] for p in series], t0, t1, CHART_W, False)
        ys = _scale(logs, lo, hi, CHART_H, True)
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))

    return {
        "width": CHART_W,
        "height": CHART_H,
        "model": points(model, logs_m),
        "hold": points(hold, logs_h),
        "top": math.exp(hi),
        "bottom": math.exp(lo),
    }
