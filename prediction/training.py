"""Train a model on stored candles: walk-forward report, final fit on all the data, artifact and registry row."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
from django.conf import settings
from django.db import transaction

from backtest.data import day_range
from backtest.engine import DEFAULT_FEE
from cryptoproject.timeutil import ms_to_datetime
from prediction import learn
from prediction.features import FEATURES, load_series
from prediction.models import PredictionModel


@dataclass(frozen=True)
class TrainSpec:
    """What to train: the pair, interval and UTC days (inclusive), the validation settings and model parameters."""

    exchange: str
    symbol: str
    interval: str
    start: date
    end: date
    horizon: int = 1
    folds: int = 5
    seed: int = 0
    threshold: float = 0.5
    fee: float = DEFAULT_FEE
    params: dict[str, Any] = field(default_factory=dict)


def _ms(dt_ms: int) -> datetime:
    return ms_to_datetime(dt_ms)


def artifact_path(spec: TrainSpec, data_hash: str) -> Path:
    """One file per (series, horizon, seed, parameters, data): retraining on the same data rewrites the same file."""
    key = hashlib.sha256(repr((sorted({**learn.HYPER_PARAMETERS, **spec.params}.items()), spec.seed)).encode())
    name = f"{spec.exchange}-{spec.symbol}-{spec.interval}-h{spec.horizon}-{data_hash[:12]}-{key.hexdigest()[:8]}"
    return Path(settings.PREDICTION_ARTIFACT_DIR) / f"{name}.joblib"


def train(
    spec: TrainSpec, on_step: Callable[[int, int], None] | None = None, activate: bool = True
) -> tuple[PredictionModel, learn.WalkForward]:
    """Walk-forward validation, then the final fit on every usable bar, saved with joblib and registered.

    ``on_step(done, total)`` is called after each fold and after the final fit (``total = folds + 1``).
    """
    started = time.perf_counter()
    lower, upper = day_range(spec.start, spec.end)
    # Both days inclusive: up to the last millisecond before the day after ``end``.
    series = load_series(spec.exchange, spec.symbol, spec.interval, lower, upper - timedelta(milliseconds=1))
    data = learn.Dataset.build(series, spec.horizon, spec.interval)
    total = spec.folds + 1

    def fold_done(done: int, _: int) -> None:
        if on_step is not None:
            on_step(done, total)

    report = learn.walk_forward(
        data, spec.interval, spec.folds, spec.seed, spec.threshold, spec.fee, spec.params, on_fold=fold_done
    )
    final = learn.fit(data, slice(learn.WARMUP, data.usable), spec.seed, spec.params)
    path = artifact_path(spec, series.digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    joblib.dump({"classifier": final[0], "regressor": final[1], "features": list(FEATURES)}, tmp)
    tmp.replace(path)  # atomic: a reader never loads half a file
    if on_step is not None:
        on_step(total, total)
    elapsed = time.perf_counter() - started
    params = {
        **learn.HYPER_PARAMETERS,
        **spec.params,
        "seed": spec.seed,
        "folds": spec.folds,
        "threshold": spec.threshold,
        "fee": spec.fee,
        "model": "HistGradientBoostingClassifier + HistGradientBoostingRegressor(absolute_error)",
    }
    with transaction.atomic():
        if activate:
            PredictionModel.objects.filter(
                exchange=spec.exchange, symbol=spec.symbol, interval=spec.interval, horizon=spec.horizon, active=True
            ).update(active=False)
        # The same data and parameters give the same model (deterministic): a re-run (make demo again) refreshes
        # its row instead of registering a duplicate.
        fields: dict[str, Any] = {
            "features": list(FEATURES),
            "train_from": _ms(int(series.open_time[0])),
            "train_to": _ms(int(series.open_time[-1])),
            "n_bars": len(series),
            "folds": report.folds,
            "overall": report.overall,
            "backtest": report.backtest,
            "artifact": str(path),
            "training_seconds": elapsed,
            "active": activate,
        }
        key: dict[str, Any] = {
            "exchange": spec.exchange,
            "symbol": spec.symbol,
            "interval": spec.interval,
            "horizon": spec.horizon,
            "data_hash": series.digest,
            "params": params,
        }
        # The newest such row if several exist (registered before this rule).
        row = PredictionModel.objects.select_for_update().filter(**key).order_by("-id").first()
        if row is None:
            row = PredictionModel.objects.create(**key, **fields)
        else:
            for name, value in fields.items():
                setattr(row, name, value)
            row.save(update_fields=list(fields))
    return row, report


def load_artifact(model: PredictionModel) -> dict[str, Any]:
    """The fitted pipelines of a registered model (cached per process: a file never changes under its name)."""
    cached = _ARTIFACTS.get(model.artifact)
    if cached is None:
        cached = joblib.load(model.artifact)
        _ARTIFACTS[model.artifact] = cached
    return cached


_ARTIFACTS: dict[str, dict[str, Any]] = {}
