"""The model and the walk-forward validation: folds, fitting, metrics, naive baselines, trading evaluation.

Plain functions over arrays (no database): ``prediction.training`` loads the candles and stores the result.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from analytics.models import INTERVAL_SECONDS
from backtest.engine import DEFAULT_FEE, Bars, simulate
from prediction.features import FEATURES, WARMUP, feature_matrix, targets
from prediction.models import BASELINES

FloatArray = npt.NDArray[np.float64]
# Probabilities are clipped here for the log loss (a constant 0 or 1 would make it infinite).
EPS = 1e-6
# Points kept of each equity curve for the models page (plenty for a chart, small in the row).
EQUITY_POINTS = 400

# Shallow trees, strong leaf minimum and L2: hourly direction is mostly noise, so the model must not chase it.
# No early stopping: its validation split would be another source of randomness and of data hidden from a fold.
HYPER_PARAMETERS: dict[str, Any] = {
    "max_iter": 150,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 200,
    "l2_regularization": 1.0,
}


@dataclass(frozen=True)
class Fold:
    """Train on rows ``[train_start, train_stop)``, test on ``[test_start, test_stop)`` (row indices).

    ``test_start - train_stop`` is the purge gap (``horizon`` rows): the targets of the dropped rows look into the
    test range.
    """

    train_start: int
    train_stop: int
    test_start: int
    test_stop: int


@dataclass
class Dataset:
    """Features, target and forward return of a series; rows with a known target only are usable."""

    series: Bars
    horizon: int
    x: FloatArray
    up: FloatArray
    ret: FloatArray

    @classmethod
    def build(cls, series: Bars, horizon: int, interval: str = "1h") -> Dataset:
        """Features and targets of ``series`` for ``horizon`` bars ahead; the last ``horizon`` targets are NaN."""
        up, ret = targets(series.close, horizon)
        return cls(series, horizon, feature_matrix(series, INTERVAL_SECONDS[interval] * 1000), up, ret)

    @property
    def usable(self) -> int:
        """Rows with a known outcome: all but the last ``horizon``."""
        return max(len(self.series) - self.horizon, 0)


def fold_splits(n_rows: int, folds: int, horizon: int, warmup: int = WARMUP) -> list[Fold]:
    """Expanding-window folds over rows ``[warmup, n_rows)``: ``folds + 1`` equal blocks, fold ``i`` trains on
    blocks ``0..i`` minus the last ``horizon`` rows and tests on block ``i + 1``. No shuffling."""
    if folds < 1:
        raise ValueError(f"folds must be at least 1, got {folds}")
    span = n_rows - warmup
    block = span // (folds + 1)
    if block <= horizon + 10:
        raise ValueError(f"{n_rows} bars are too few for {folds} folds (need at least ~{(folds + 1) * 20 + warmup})")
    edges = [warmup + i * block for i in range(folds + 1)] + [n_rows]
    return [Fold(warmup, edges[i + 1] - horizon, edges[i + 1], edges[i + 2]) for i in range(folds)]


def make_pipelines(seed: int, params: dict[str, Any] | None = None) -> tuple[Pipeline, Pipeline]:
    """The classifier of P(up) and the regressor of the return (absolute error: its metric is the MAE)."""
    p = {**HYPER_PARAMETERS, **(params or {})}
    common = {**p, "early_stopping": False, "random_state": seed}
    classifier = Pipeline([("model", HistGradientBoostingClassifier(**common))])
    regressor = Pipeline([("model", HistGradientBoostingRegressor(loss="absolute_error", **common))])
    return classifier, regressor


def single_threaded() -> Any:
    """One OpenMP/BLAS thread: identical sums run to run, and no thread pool fighting Celery's processes."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return threadpool_limits(limits=1)


def fit(data: Dataset, rows: slice, seed: int, params: dict[str, Any] | None = None) -> tuple[Pipeline, Pipeline]:
    """Fit a fresh classifier (P(up)) and regressor (return) on ``rows``, single-threaded so refits are identical."""
    classifier, regressor = make_pipelines(seed, params)
    x, up, ret = data.x[rows], data.up[rows], data.ret[rows]
    with single_threaded():
        classifier.fit(x, up.astype(np.int64))
        regressor.fit(x, ret)
    return classifier, regressor


def predict(models: tuple[Pipeline, Pipeline], x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """P(up) and the predicted return for each row of ``x``."""
    classifier, regressor = models
    with single_threaded():
        proba = classifier.predict_proba(x)
        ret = regressor.predict(x)
    classes = list(classifier.classes_)
    p_up = proba[:, classes.index(1)] if 1 in classes else np.zeros(len(x))
    return p_up.astype(np.float64), np.asarray(ret, dtype=np.float64)


def fit_predict(
    data: Dataset, fold: Fold, seed: int, params: dict[str, Any] | None = None
) -> tuple[FloatArray, FloatArray]:
    """Fit on the fold's training rows, predict its test rows: the out-of-sample predictions."""
    models = fit(data, slice(fold.train_start, fold.train_stop), seed, params)
    return predict(models, data.x[fold.test_start : fold.test_stop])


def scores(p_up: FloatArray, pred_ret: FloatArray, up: FloatArray, ret: FloatArray) -> dict[str, float]:
    """Accuracy (P(up) > 0.5 counts as up), log loss, Brier score and the MAE of the predicted return."""
    p = np.clip(p_up, EPS, 1 - EPS)
    return {
        "accuracy": float(np.mean((p_up > 0.5) == (up == 1))),
        "log_loss": float(-np.mean(up * np.log(p) + (1 - up) * np.log(1 - p))),
        "brier": float(np.mean((p_up - up) ** 2)),
        "return_mae": float(np.mean(np.abs(pred_ret - ret))),
    }


def baseline_predictions(data: Dataset, fold: Fold) -> dict[str, tuple[FloatArray, FloatArray]]:
    """P(up) and predicted return of each naive baseline on the fold's test rows, fitted on its training rows.

    Accuracy uses their hard calls: ``always_up`` says up, ``persistence`` repeats the sign of the last return,
    ``majority`` says the training fold's more frequent class. Their probabilities (for log loss and Brier) are the
    training fold's frequencies: the up rate, or the up rate after an up (down) bar for persistence.
    """
    train = slice(fold.train_start, fold.train_stop)
    test = slice(fold.test_start, fold.test_stop)
    up_train, ret_train = data.up[train], data.ret[train]
    rate = float(up_train.mean())
    mean_ret = float(ret_train.mean())
    n = fold.test_stop - fold.test_start
    last_train = data.x[train, 0]  # ret_1: the log return of the bar just closed
    last_test = data.x[test, 0]
    after_up = up_train[last_train > 0]
    after_down = up_train[~(last_train > 0)]
    p_after_up = float(after_up.mean()) if len(after_up) else rate
    p_after_down = float(after_down.mean()) if len(after_down) else rate
    # The hard call is carried by which side of 0.5 the probability is on; the frequency only tilts it.
    persistence_p = np.where(last_test > 0, max(p_after_up, 0.5 + EPS), min(p_after_down, 0.5))
    always_up_p = np.full(n, max(rate, 0.5 + EPS))
    majority_p = np.full(n, rate if rate != 0.5 else 0.5)
    persistence_ret = np.nan_to_num(np.expm1(last_test))
    flat = np.full(n, mean_ret)
    return {
        "always_up": (always_up_p, flat),
        "persistence": (persistence_p, persistence_ret),
        "majority": (majority_p, flat),
    }


def _downsample(times: list[int], values: list[float]) -> list[list[float]]:
    step = max(1, math.ceil(len(times) / EQUITY_POINTS))
    keep = list(range(0, len(times), step))
    if keep[-1] != len(times) - 1:
        keep.append(len(times) - 1)
    return [[times[i], values[i]] for i in keep]


def _evaluate(bars: Bars, p_up: FloatArray, threshold: float, fee: float) -> dict[str, Any]:
    model = simulate(bars, p_up > threshold, fee=fee)
    hold = simulate(bars, np.ones(len(bars), dtype=np.bool_), fee=fee)
    times = bars.open_time.tolist()
    return {
        "model_total_return": float(model.metrics["total_return"] or 0.0),
        "buy_and_hold_return": float(hold.metrics["total_return"] or 0.0),
        "model_max_drawdown": model.metrics["max_drawdown"],
        "buy_and_hold_max_drawdown": hold.metrics["max_drawdown"],
        "model_sharpe": model.metrics["sharpe"],
        "buy_and_hold_sharpe": hold.metrics["sharpe"],
        "trades": model.metrics["trades"],
        "exposure": model.metrics["exposure"],
        "fees": model.metrics["fees"],
        "threshold": threshold,
        "fee": fee,
        "equity": _downsample(times, model.equity.tolist()),
        "buy_and_hold_equity": _downsample(times, hold.equity.tolist()),
    }


@dataclass
class WalkForward:
    """The report of :func:`walk_forward` (the ``--json`` layout) and the out-of-sample predictions behind it."""

    folds: list[dict[str, Any]]
    overall: dict[str, Any]
    backtest: dict[str, Any]
    p_up: FloatArray
    test_rows: tuple[int, int]

    def as_json(self) -> dict[str, Any]:
        """The report as the ``--json`` layout: folds, overall metrics and the backtest; predictions left out."""
        return {"folds": self.folds, "overall": self.overall, "backtest": self.backtest}


def walk_forward(
    data: Dataset,
    interval: str,
    folds: int = 5,
    seed: int = 0,
    threshold: float = 0.5,
    fee: float = DEFAULT_FEE,
    params: dict[str, Any] | None = None,
    on_fold: Callable[[int, int], None] | None = None,
) -> WalkForward:
    """Fit and score every fold; pool the out-of-sample predictions into the overall metrics and one backtest."""
    splits = fold_splits(data.usable, folds, data.horizon)
    series = data.series
    fold_reports: list[dict[str, Any]] = []
    pooled: dict[str, list[FloatArray]] = {"p": [], "r": [], "up": [], "ret": []}
    pooled_base: dict[str, list[tuple[FloatArray, FloatArray]]] = {name: [] for name in BASELINES}
    for i, fold in enumerate(splits):
        p_up, pred_ret = fit_predict(data, fold, seed, params)
        test = slice(fold.test_start, fold.test_stop)
        up, ret = data.up[test], data.ret[test]
        base = baseline_predictions(data, fold)
        bars = _bars(series, interval, fold.test_start, fold.test_stop)
        evaluation = _evaluate(bars, p_up, threshold, fee)
        fold_reports.append(
            {
                "fold": i + 1,
                "train_start": int(series.open_time[fold.train_start]),
                "train_end": int(series.open_time[fold.train_stop - 1]),
                "test_start": int(series.open_time[fold.test_start]),
                "test_end": int(series.open_time[fold.test_stop - 1]),
                "n_train": fold.train_stop - fold.train_start,
                "n_test": fold.test_stop - fold.test_start,
                "up_rate_train": float(data.up[fold.train_start : fold.train_stop].mean()),
                "model": scores(p_up, pred_ret, up, ret),
                "baselines": {name: scores(bp, br, up, ret) for name, (bp, br) in base.items()},
                "backtest": {k: v for k, v in evaluation.items() if not k.endswith("equity")},
            }
        )
        pooled["p"].append(p_up)
        pooled["r"].append(pred_ret)
        pooled["up"].append(up)
        pooled["ret"].append(ret)
        for name, pair in base.items():
            pooled_base[name].append(pair)
        if on_fold is not None:
            on_fold(i + 1, len(splits))
    p_all, up_all = np.concatenate(pooled["p"]), np.concatenate(pooled["up"])
    ret_all = np.concatenate(pooled["ret"])
    model_scores = scores(p_all, np.concatenate(pooled["r"]), up_all, ret_all)
    base_scores = {
        name: scores(np.concatenate([p for p, _ in pairs]), np.concatenate([r for _, r in pairs]), up_all, ret_all)
        for name, pairs in pooled_base.items()
    }
    first, last = splits[0].test_start, splits[-1].test_stop
    backtest = _evaluate(_bars(series, interval, first, last), p_all, threshold, fee)
    overall = {
        "test_start": int(series.open_time[first]),
        "test_end": int(series.open_time[last - 1]),
        "n_test": last - first,
        "model": model_scores,
        "baselines": base_scores,
        "verdict": verdict(model_scores, base_scores),
    }
    return WalkForward(fold_reports, overall, backtest, p_all, (first, last))


def _bars(series: Bars, interval: str, start: int, stop: int) -> Bars:
    s = slice(start, stop)
    return Bars(interval, series.open_time[s], series.open[s], series.high[s], series.low[s], series.close[s])


def verdict(model: dict[str, float], baselines: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Whether the model beats each baseline out of sample: on accuracy, and on log loss (lower is better)."""
    out: dict[str, Any] = {}
    for name, base in baselines.items():
        out[name] = {
            "accuracy": model["accuracy"] > base["accuracy"],
            "log_loss": model["log_loss"] < base["log_loss"],
        }
    best = max(baselines, key=lambda n: baselines[n]["accuracy"])
    out["best_baseline"] = best
    out["beats_all_on_accuracy"] = all(v["accuracy"] for k, v in out.items() if k in baselines)
    return out


def describe(report: dict[str, Any]) -> list[str]:
    """The plain-language lines of the report: does the model beat each baseline out of sample?"""
    overall = report["overall"]
    model = overall["model"]
    lines = []
    for name in BASELINES:
        base = overall["baselines"][name]
        acc = "beats it" if model["accuracy"] > base["accuracy"] else "does NOT beat it"
        loss = "beats it" if model["log_loss"] < base["log_loss"] else "does NOT beat it"
        lines.append(
            f"out of sample vs {name}: accuracy {model['accuracy']:.4f} vs {base['accuracy']:.4f} ({acc}); "
            f"log loss {model['log_loss']:.4f} vs {base['log_loss']:.4f} ({loss})"
        )
    bt = report["backtest"]
    lines.append(
        f"trading (after fees): model {bt['model_total_return']:+.2%} vs buy-and-hold {bt['buy_and_hold_return']:+.2%}"
    )
    return lines


FEATURE_NAMES = list(FEATURES)
