"""Bars from stored candles, stored runs, the command (single run, JSON, sweep, train-until) and the Celery task."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from analytics.models import Candle
from backtest import runs
from backtest.data import bars_from_kline_csv, load_bars
from backtest.models import BacktestRun
from backtest.strategies import get_strategy
from backtest.sweep import Ranked, combinations, parse_grid, rank_key, sweep
from tests.backtest.helpers import START, make_bars, store_candles

pytestmark = pytest.mark.django_db

# Three days of hourly closes: a rise, a fall, a rise (so crossings happen), on 2024-01-01 .. 2024-01-03.
WAVE = [Decimal(100 + 10 * ((i % 24) if (i // 24) % 2 == 0 else 24 - (i % 24))) for i in range(72)]


def test_bars_cover_whole_utc_days_in_order_and_never_invent_missing_ones():
    store_candles(WAVE[:48], skip=frozenset({30, 31}))
    store_candles(["1"], start=START - timedelta(hours=1))  # the evening before: outside the range
    store_candles(["1"], start=START + timedelta(days=2))  # the day after --to: outside
    store_candles(WAVE[:24], symbol="ETHUSDT")  # another series
    bars = load_bars("binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 2))
    assert len(bars) == 46  # 48 hours less the two missing ones
    times = bars.open_time.tolist()
    assert times == sorted(times)
    assert times[0] == int(START.timestamp() * 1000)
    assert times[-1] == int((START + timedelta(hours=47)).timestamp() * 1000)
    assert int((START + timedelta(hours=30)).timestamp() * 1000) not in times
    assert bars.close[0] == 100.0
    assert bars.open[1] == 100.0
    assert bars.close[1] == 110.0


def test_the_bars_hash_names_the_exact_stored_values():
    store_candles(WAVE)
    first = load_bars("binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 3)).digest
    assert load_bars("binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 3)).digest == first
    Candle.objects.filter(open_time=START + timedelta(hours=5)).update(close=Decimal("150.000000000001"))
    assert load_bars("binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 3)).digest != first


def test_kline_csvs_with_and_without_header_in_ms_and_us(tmp_path):
    row = "{t},100.5,101,99,100.75,1,0,0,1,0,0,0\n"
    (tmp_path / "a.csv").write_text("open_time,open,high,low,close\n" + row.format(t=1735689600000))
    (tmp_path / "b.csv").write_text(row.format(t=1735693200000000))  # µs, as the archive writes from 2025
    bars = bars_from_kline_csv([tmp_path / "b.csv", tmp_path / "a.csv"], "1h")
    assert bars.open_time.tolist() == [1735689600000, 1735693200000]
    assert bars.open.tolist() == [100.5, 100.5]
    assert bars.close.tolist() == [100.75, 100.75]


def test_kline_csv_rows_without_a_trade_make_no_bar_as_in_the_import(tmp_path):
    traded = "{t},100.5,101,99,100.75,1,0,0,3,0,0,0\n"
    empty = "{t},100.75,100.75,100.75,100.75,0,0,0,0,0,0,0\n"
    rows = [traded.format(t=1735689600000), empty.format(t=1735693200000), traded.format(t=1735696800000)]
    (tmp_path / "k.csv").write_text("".join(rows))
    bars = bars_from_kline_csv([tmp_path / "k.csv"], "1h")
    assert bars.open_time.tolist() == [1735689600000, 1735696800000]


def test_the_bundled_klines_give_the_bars_the_import_stores():
    files = sorted(Path("data/binance-klines/data/spot/monthly/klines/BTCUSDT/1h").glob("BTCUSDT-1h-*.zip"))
    assert files
    # data/binance-klines/README.md: 39,638 rows, of which 3 without a trade; the importer stores 39,635 candles.
    assert len(bars_from_kline_csv(files, "1h")) == 39_635


def test_execute_stores_the_result_and_is_idempotent():
    store_candles(WAVE)
    run = runs.prepare(
        runs.RunSpec("sma_cross", "binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 3), {"fast": "3"})
    )
    run.save()
    seen: list[float] = []
    done = runs.execute(run.pk, on_progress=seen.append)
    assert done is not None
    done.refresh_from_db()
    assert done.status == BacktestRun.Status.DONE
    assert done.progress == 1.0
    assert seen[-1] == 1.0
    assert seen == sorted(seen)
    assert done.params == {"fast": 3, "slow": 30}
    assert done.bars == 72
    assert len(done.bars_hash) == 64
    assert done.first_open_time == START
    assert done.last_open_time == START + timedelta(hours=71)
    assert len(done.equity) == 72
    assert done.equity[0] == [int(START.timestamp() * 1000), 10000.0]
    assert done.metrics["trades"] == len(done.trades) > 0
    finished = done.finished_at
    runs.execute(run.pk)  # a redelivered task: left as it is
    done.refresh_from_db()
    assert done.finished_at == finished
    assert runs.execute(999_999) is None


def test_a_run_without_bars_fails_with_the_reason():
    run = runs.prepare(runs.RunSpec("sma_cross", "binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 3)))
    run.save()
    runs.execute(run.pk)
    run.refresh_from_db()
    assert run.status == BacktestRun.Status.FAILED
    assert run.error == "no 1h candles stored for binance:BTCUSDT from 2024-01-01 to 2024-01-03"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"interval": "2h"}, "unknown interval '2h'"),
        ({"date_to": date(2023, 12, 31)}, "before the start date"),
        ({"cash": Decimal(0)}, "cash must be positive"),
        ({"fee": Decimal(1)}, "fee must be in"),
        ({"strategy": "nope"}, "unknown strategy"),
    ],
)
def test_prepare_refuses_bad_specs(change, message):
    fields = {
        "strategy": "sma_cross", "exchange": "binance", "symbol": "BTCUSDT", "interval": "1h",
        "date_from": date(2024, 1, 1), "date_to": date(2024, 1, 3), **change,
    }  # fmt: skip
    with pytest.raises(ValueError, match=message):
        runs.prepare(runs.RunSpec(**fields))


def test_command_prints_stores_and_writes_the_json_layout(tmp_path, capsys):
    store_candles(WAVE)
    out = tmp_path / "run.json"
    call_command(
        "backtest", "--strategy", "sma_cross", "--symbol", "btcusdt", "--from", "2024-01-01", "--to", "2024-01-03",
        "--param", "fast=3", "--param", "slow=6", "--fee", "0.002", "--cash", "5000", "--json", str(out),
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "72 bars 2024-01-01..2024-01-03" in printed
    assert "total_return" in printed
    body = json.loads(out.read_text())
    assert set(body) == {"metrics", "equity", "trades", "params", "bars"}
    assert body["params"] == {"fast": 3, "slow": 6}
    assert body["bars"] == 72
    assert all(isinstance(t, int) and isinstance(e, float) for t, e in body["equity"])
    trade = body["trades"][0]
    assert set(trade) == {"entry_time", "entry_price", "exit_time", "exit_price", "return"}
    assert trade["entry_time"] > int(START.timestamp() * 1000)
    run = BacktestRun.objects.get()
    assert run.status == "done"
    assert run.cash == Decimal(5000)
    assert run.fee == Decimal("0.002")
    assert run.metrics == pytest.approx(body["metrics"])
    assert f"stored as run {run.pk}" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "2024-01-03"], "--from is required"),
        (["--from", "2024-13-01", "--to", "2024-01-03"], "not a date"),
        (["--from", "2024-01-01", "--to", "2024-01-03", "--param", "fast"], "--param expects name=value"),
        (["--from", "2024-01-01", "--to", "2024-01-03", "--cash", "lots"], "--cash must be a number"),
        (["--from", "2024-01-01", "--to", "2024-01-03", "--param", "fast=50"], "must be shorter than slow"),
        (["--from", "2025-01-01", "--to", "2025-01-03"], "no 1h candles stored"),
        (["--from", "2024-01-01", "--to", "2024-01-03", "--grid", "fast=a:b"], "expected name=start:stop:step"),
        (["--from", "2024-01-01", "--to", "2024-01-03", "--grid", "x=1,2"], "unknown grid parameter 'x'"),
    ],
)
def test_command_errors_name_the_problem(args, message):
    store_candles(WAVE)
    with pytest.raises(CommandError, match=message):
        call_command("backtest", "--strategy", "sma_cross", "--symbol", "BTCUSDT", *args)


def test_command_lists_strategies(capsys):
    call_command("backtest", "--list")
    printed = capsys.readouterr().out
    assert "sma_cross" in printed
    assert "fast=10 slow=30" in printed
    assert "bollinger_breakout" in printed


def test_sweep_ranks_every_valid_combination_and_reports_out_of_sample(tmp_path, capsys):
    store_candles(WAVE * 3, start=START)  # nine days
    out = tmp_path / "sweep.json"
    call_command(
        "backtest", "--strategy", "sma_cross", "--symbol", "BTCUSDT", "--from", "2024-01-01", "--to", "2024-01-09",
        "--grid", "fast=2:6:2", "--grid", "slow=4,8", "--metric", "total_return", "--train-until", "2024-01-06",
        "--json", str(out),
    )  # fmt: skip
    body = json.loads(out.read_text())
    # fast 2, 4, 6 x slow 4, 8 = 6 combinations; (4, 4) and (6, 4) are invalid (fast must be shorter).
    assert len(body["ranked"]) == 4
    assert len(body["skipped"]) == 2
    returns = [r["metrics"]["total_return"] for r in body["ranked"]]
    assert returns == sorted(returns, reverse=True)
    assert body["in_sample_bars"] == 144
    assert body["out_of_sample_bars"] == 72
    best = body["ranked"][0]["params"]
    bars = load_bars("binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 9))
    targets = get_strategy("sma_cross").targets(bars, best)
    from backtest.engine import simulate

    expected_oos = simulate(bars.slice(144), targets[144:], cash=10_000, fee=0.001).metrics
    assert body["out_of_sample"] == pytest.approx(expected_oos)
    in_sample = simulate(bars.slice(0, 144), targets[:144], cash=10_000, fee=0.001).metrics
    assert body["ranked"][0]["metrics"] == pytest.approx(in_sample)
    printed = capsys.readouterr().out
    assert "4 combinations ranked by total_return, in sample 144 bars (2 skipped as invalid)" in printed
    assert "out of sample (72 bars)" in printed


def test_grid_parsing_and_ranking_rules():
    assert parse_grid("fast=5:50:5") == ("fast", [5, 10, 15, 20, 25, 30, 35, 40, 45, 50])
    assert parse_grid("k=1.5:2.5:0.5") == ("k", [1.5, 2, 2.5])
    assert parse_grid("low=20,25.5") == ("low", [20, 25.5])
    assert parse_grid("slow=30") == ("slow", [30])
    assert len(combinations({"fast": list(range(5, 55, 5)), "slow": list(range(20, 210, 10))})) == 190
    for bad in ("fast", "fast=", "fast=5:1:1", "fast=1:5:0", "fast=1:5"):
        with pytest.raises(ValueError, match="expected name="):
            parse_grid(bad)
    with pytest.raises(ValueError, match="unknown metric"):
        rank_key("luck")
    bars = make_bars([1, 2, 3, 4, 5, 6], [2, 3, 4, 5, 6, 7])
    with pytest.raises(ValueError, match="leaves no bars"):
        sweep(bars, get_strategy("sma_cross"), {"fast": [2]}, base={"slow": 3}, cash=1, fee=0,
              train_until=date(2030, 1, 1))  # fmt: skip
    # Drawdown ranks ascending; an undefined value ranks last.
    result = sweep(bars, get_strategy("sma_cross"), {"fast": [1, 2]}, base={"slow": 3}, metric="max_drawdown",
                   cash=1, fee=0)  # fmt: skip
    drawdowns = [float(r.metrics["max_drawdown"] or 0) for r in result.ranked]
    assert drawdowns == sorted(drawdowns)
    ranked = [Ranked({"n": 1}, {"sharpe": None}), Ranked({"n": 2}, {"sharpe": 1.0}), Ranked({"n": 3}, {"sharpe": 2.0})]
    assert [r.params["n"] for r in sorted(ranked, key=rank_key("sharpe"))] == [3, 2, 1]


def test_an_unexpected_error_fails_the_run_and_is_raised():
    from backtest.strategies import STRATEGIES, strategy

    @strategy("test_broken")
    def broken(bars):
        raise RuntimeError("bug in a strategy")

    try:
        store_candles(WAVE)
        run = runs.prepare(runs.RunSpec("test_broken", "binance", "BTCUSDT", "1h", date(2024, 1, 1), date(2024, 1, 3)))
        run.save()
        with pytest.raises(RuntimeError, match="bug in a strategy"):
            runs.execute(run.pk)
        run.refresh_from_db()
        assert run.status == "failed"
        assert run.error == "internal error: RuntimeError('bug in a strategy')"
    finally:
        STRATEGIES.pop("test_broken", None)


def test_reuse_stores_a_run_once_per_spec_and_bars_and_again_when_the_bars_change(capsys):
    store_candles(WAVE)
    args = ["backtest", "--strategy", "sma_cross", "--symbol", "BTCUSDT", "--from", "2024-01-01", "--to", "2024-01-03"]
    call_command(*args, "--reuse")
    first = BacktestRun.objects.get()
    call_command(*args, "--reuse")
    assert f"already stored as run {first.pk}" in capsys.readouterr().out
    assert BacktestRun.objects.count() == 1
    call_command(*args, "--reuse", "--param", "fast=4")  # other parameters: a run of its own
    assert BacktestRun.objects.count() == 2
    Candle.objects.filter(open_time=START + timedelta(hours=30)).update(close=Decimal("155.5"))
    call_command(*args, "--reuse")  # the same spec on changed bars is a new result
    assert BacktestRun.objects.count() == 3
    call_command(*args)  # without --reuse every run is stored
    assert BacktestRun.objects.count() == 4
    call_command(*args, "--no-save")
    assert BacktestRun.objects.count() == 4
