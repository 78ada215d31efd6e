"""Walk-forward validation on the real bundled BTCUSDT hours: no leakage, deterministic, the --json layout."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from prediction import learn
from prediction.features import FEATURES, WARMUP, feature_matrix, load_series, targets
from prediction.models import PredictionModel
from prediction.training import TrainSpec, train

pytestmark = pytest.mark.django_db

FROM, TO = datetime(2021, 11, 1, tzinfo=UTC), datetime(2022, 2, 28, 23, tzinfo=UTC)


@pytest.fixture
def hours(import_hourly):
    import_hourly("2021-11-01", "2022-02-28")
    return load_series("binance", "BTCUSDT", "1h", FROM, TO)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def test_features_and_targets_are_what_they_say():
    close = np.array([100.0, 101.0, 100.5, 100.5, 102.0])
    up, ret = targets(close, 1)
    assert up[:4].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert np.isnan(up[4])
    assert ret[0] == pytest.approx(0.01)
    up2, _ = targets(close, 2)
    assert up2[:3].tolist() == [1.0, 0.0, 1.0]
    assert np.isnan(up2[3:]).all()
    with pytest.raises(ValueError, match="horizon"):
        targets(close, 0)


def test_every_feature_of_a_bar_is_the_same_with_or_without_the_bars_after_it(hours):
    full = feature_matrix(hours)
    assert full.shape == (len(hours), len(FEATURES))
    assert not np.isnan(full[WARMUP:]).any()  # the warm-up covers every indicator
    for cut in (WARMUP, 700, 1500, len(hours) - 2):
        t = int(hours.open_time[cut])
        assert same(feature_matrix(hours.upto(t)), full[: cut + 1]), f"features up to bar {cut} changed"


def test_folds_expand_never_shuffle_and_purge_the_horizon():
    folds = learn.fold_splits(1050, 4, 3, warmup=50)
    assert [f.train_start for f in folds] == [50] * 4
    for a, b in itertools.pairwise(folds):
        assert b.train_stop > a.train_stop
        assert b.test_start == a.test_stop
    for f in folds:
        # The last training target (row train_stop - 1) looks at row train_stop - 1 + h: before the test rows.
        assert f.test_start - f.train_stop == 3
        assert f.train_stop - 1 + 3 < f.test_start
    assert folds[-1].test_stop == 1050
    with pytest.raises(ValueError, match="too few"):
        learn.fold_splits(100, 5, 1)
    with pytest.raises(ValueError, match="folds"):
        learn.fold_splits(1000, 0, 1)


@pytest.mark.parametrize("horizon", [1, 3])
def test_walk_forward_predictions_up_to_t_are_the_same_whether_or_not_later_candles_exist(hours, horizon):
    """Leakage: fit every fold on the series cut at T and on the whole series with the same folds, then predict
    every bar from the fold's test start up to T itself (the last h of them have no outcome yet, so they are
    predicted, not scored): the predictions must be identical."""
    t = int(hours.open_time[2000])
    cut = learn.Dataset.build(hours.upto(t), horizon)
    full = learn.Dataset.build(hours, horizon)
    splits = learn.fold_splits(cut.usable, 3, horizon)
    assert splits[-1].test_stop == 2001 - horizon
    for fold in splits:
        p_cut, r_cut = learn.fit_predict(cut, fold, seed=0)
        p_full, r_full = learn.fit_predict(full, fold, seed=0)
        assert same(p_cut, p_full), f"fold {fold}: P(up) changed with later candles"
        assert same(r_cut, r_full), f"fold {fold}: the predicted return changed with later candles"
        rows = slice(fold.test_start, 2001)  # up to and including T
        models_cut = learn.fit(cut, slice(fold.train_start, fold.train_stop), seed=0)
        models_full = learn.fit(full, slice(fold.train_start, fold.train_stop), seed=0)
        up_to_t_cut = learn.predict(models_cut, cut.x[rows])
        up_to_t_full = learn.predict(models_full, full.x[rows])
        assert same(up_to_t_cut[0], up_to_t_full[0]), f"fold {fold}: a prediction up to T changed with later candles"
    assert same(cut.up[: cut.usable], full.up[: cut.usable])


def test_same_data_and_seed_give_the_same_metrics(hours, artifact_dir):
    spec = TrainSpec("binance", "BTCUSDT", "1h", date(2021, 11, 1), date(2022, 2, 28), folds=3, seed=7)
    first, report1 = train(spec)
    second, report2 = train(spec)
    assert report1.as_json() == report2.as_json()
    assert first.folds == second.folds
    assert first.overall == second.overall
    assert first.backtest == second.backtest
    assert first.data_hash == second.data_hash == hours.digest
    assert first.artifact == second.artifact
    assert artifact_dir in (p := __import__("pathlib").Path(first.artifact)).parents
    assert p.exists()
    # Registry: the same data and parameters are the same model (one row, re-run refreshes it); another seed is
    # another model, which becomes the active one.
    assert first.pk == second.pk
    assert second.active
    assert second.params["seed"] == 7
    assert second.features == list(FEATURES)
    assert second.n_bars == len(hours)
    assert second.train_from == FROM
    assert second.train_to == TO
    other, _ = train(TrainSpec("binance", "BTCUSDT", "1h", date(2021, 11, 1), date(2022, 2, 28), folds=3, seed=8))
    first.refresh_from_db()
    assert other.pk != first.pk
    assert (first.active, other.active) == (False, True)
    assert PredictionModel.objects.count() == 2


def test_train_model_writes_the_json_layout_and_says_whether_it_beats_each_baseline(hours, tmp_path, capsys):
    out_file = tmp_path / "report.json"
    call_command(
        "train_model", "--symbol", "BTCUSDT", "--from", "2021-11-01", "--to", "2022-02-28",
        "--folds", "3", "--json", str(out_file),
    )  # fmt: skip
    report = json.loads(out_file.read_text())
    assert len(report["folds"]) == 3
    times = hours.open_time.tolist()
    for fold in report["folds"]:
        assert {"train_start", "train_end", "test_start", "test_end", "n_train", "n_test"} <= fold.keys()
        assert {"accuracy", "log_loss", "brier", "return_mae"} <= fold["model"].keys()
        assert set(fold["baselines"]) == {"always_up", "persistence", "majority"}
        for name in learn.BASELINES:
            assert 0 <= fold["baselines"][name]["accuracy"] <= 1
        # Times are the open_time (ms) of the first and last bar of each range, both inclusive.
        i0, i1 = times.index(fold["train_start"]), times.index(fold["train_end"])
        j0, j1 = times.index(fold["test_start"]), times.index(fold["test_end"])
        assert (i1 - i0 + 1, j1 - j0 + 1) == (fold["n_train"], fold["n_test"])
        assert j0 - i1 == 2  # a purge gap of h = 1 bar between them
    assert {"model_total_return", "buy_and_hold_return"} <= report["backtest"].keys()
    assert report["overall"]["n_test"] == sum(f["n_test"] for f in report["folds"])
    out = capsys.readouterr()
    assert "| fold |" in out.out
    assert "train_model" in out.err
    for name in learn.BASELINES:
        assert f"out of sample vs {name}: accuracy" in out.out
    assert PredictionModel.objects.get(pk=report["model_id"]).active


def test_buy_and_hold_of_the_report_is_the_engines_all_long_run(hours):
    data = learn.Dataset.build(hours, 1)
    wf = learn.walk_forward(data, "1h", folds=2)
    first, last = wf.test_rows
    opens, closes = hours.open[first:last], hours.close[first:last]
    # Long from the close of the first bar: filled at the second bar's open with the fee, valued at the last close.
    expected = closes[-1] * (1 - 0) / (opens[1] * 1.001) - 1
    assert wf.backtest["buy_and_hold_return"] == pytest.approx(expected, rel=1e-9)
    assert wf.backtest["equity"][0][0] == int(hours.open_time[first])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2022-02-01", "--to", "2022-01-01"], "before"),
        (["--from", "2022-01-01", "--to", "2022-01-02"], "too few"),
        (["--from", "2022-13-01", "--to", "2022-01-02"], "invalid date"),
        (["--from", "2022-01-01", "--to", "2022-01-02", "--horizon", "0"], "--horizon"),
        (["--from", "2022-01-01", "--to", "2022-01-02", "--threshold", "1"], "--threshold"),
    ],
)
def test_command_errors_name_the_problem(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("train_model", "--symbol", "BTCUSDT", *args)


def test_no_feature_is_computed_across_a_long_hole(hours):
    """Live candles resuming years after the imported history (or a long outage) start afresh: the rows after
    the hole are those of the bars after it alone; a short hole is bridged as before."""
    step = 3_600_000
    keep = np.r_[0:1000, 1030 : len(hours)]  # a 30-bar hole
    holed = type(hours)(
        "1h", *(getattr(hours, c)[keep] for c in ("open_time", "open", "high", "low", "close", "volume"))
    )
    after = type(hours)(
        "1h", *(getattr(hours, c)[1030:] for c in ("open_time", "open", "high", "low", "close", "volume"))
    )
    x = feature_matrix(holed, step)
    assert same(x[:1000], feature_matrix(hours, step)[:1000])
    assert same(x[1000:], feature_matrix(after, step))
    assert np.isnan(x[1000, 0])
    assert not np.isnan(x[1000, -1])
    short = np.r_[0:1000, 1010 : len(hours)]  # 10 bars: bridged
    bridged = type(hours)(
        "1h", *(getattr(hours, c)[short] for c in ("open_time", "open", "high", "low", "close", "volume"))
    )
    assert same(feature_matrix(bridged, step), feature_matrix(bridged))


def test_features_split_at_the_indicator_setting(hours, settings):
    """The features use the stored indicators' rule (INDICATOR_MAX_GAP_BARS), not a constant of their own."""
    step = 3_600_000
    short = np.r_[0:1000, 1010 : len(hours)]  # 10 missing bars: bridged at the default 24
    bridged = type(hours)(
        "1h", *(getattr(hours, c)[short] for c in ("open_time", "open", "high", "low", "close", "volume"))
    )
    settings.INDICATOR_MAX_GAP_BARS = 9
    x = feature_matrix(bridged, step)
    assert same(x[1000:], feature_matrix(bridged[1000:], step))
    assert np.isnan(x[1000, FEATURES.index("rsi_14")])
    settings.INDICATOR_MAX_GAP_BARS = 10
    assert same(feature_matrix(bridged, step), feature_matrix(bridged))
