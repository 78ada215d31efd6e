"""``make bench-backtest`` (and the backtest half of ``make bench-history``): the engine on real hourly bars.

Reads the bundled BTCUSDT 1h klines (2017-08 .. 2022-02: 39,635 bars, the 39,638 klines less 3 without a trade)
straight from their CSV files, so it needs no database, and reports, each beside a reference measured in the same run:

- one backtest per strategy (indicators computed fresh, signals, fills, metrics; best of 5) against the
  straightforward version: the live Decimal indicator code candle by candle, then the per-bar reference loop;
- a 1,000-combination ``sma_cross`` sweep (and one of ``rsi_reversion``) against the same straightforward version
  timed on its first 20 combinations and scaled to 1,000;
- peak memory (VmHWM) after each stage, and the traced Python allocations of a 100-combination sweep.

    python -m benchmarks.backtest [--klines DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, peak_rss_mb, print_report, setup_django

# The bundled archive zips (data/binance-klines, provenance in its README): 55 months of BTCUSDT 1h spot.
KLINE_DIRS = [ROOT / "data/binance-klines/data/spot/monthly/klines/BTCUSDT/1h"]
SWEEP_SMA = {"fast": list(range(2, 42, 2)), "slow": list(range(50, 550, 10))}  # 20 x 50, all valid (fast < slow)
SWEEP_RSI = {"period": list(range(6, 26, 2)), "low": list(range(16, 36, 2)), "high": list(range(62, 82, 2))}
REFERENCE_SAMPLE = 20


def _kline_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.csv"), *folder.glob("*.zip")])


def klines_dir(given: Path | None) -> Path:
    """``given`` if it holds kline CSVs or zips, else the first default folder that does; exits naming them if none."""
    for folder in [given] if given else KLINE_DIRS:
        if folder is not None and any(_kline_files(folder)):
            return folder
    raise SystemExit(f"no kline CSVs or zips found in {given or ' or '.join(map(str, KLINE_DIRS))}")


def best_of(func: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs (seconds) and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - started)
    return min(times), result


def naive_backtest(closes_dec: list[Decimal], opens: list[float], closes: list[float], fast: int, slow: int) -> float:
    """sma_cross the straightforward way: the live Decimal SMA candle by candle, then the per-bar loop."""
    from analytics.indicators import sma
    from backtest.reference import simulate_loop

    fast_sma, slow_sma = sma(closes_dec, fast), sma(closes_dec, slow)
    targets = [f is not None and s is not None and f > s for f, s in zip(fast_sma, slow_sma, strict=True)]
    equity, _, _ = simulate_loop(opens, closes, targets, 10_000.0, 0.001)
    return equity[-1]


def run(folder: Path) -> dict[str, Any]:
    """Time CSV loading, single backtests (against the reference engine) and sweeps on ``folder``'s hourly bars."""
    setup_django()
    from backtest.data import bars_from_kline_csv
    from backtest.engine import simulate
    from backtest.strategies import STRATEGIES, get_strategy
    from backtest.sweep import combinations, sweep

    pid = os.getpid()
    report: dict[str, Any] = {"rss_after_imports_mb": round(peak_rss_mb(pid), 1)}
    started = time.perf_counter()
    files = _kline_files(folder)
    bars = bars_from_kline_csv(files, "1h")
    report["bars"] = len(bars)
    report["load_csv_s"] = round(time.perf_counter() - started, 3)
    report["peak_rss_after_load_mb"] = round(peak_rss_mb(pid), 1)

    def one(name: str) -> Any:
        fresh = bars.slice(0)  # a new indicator cache: every indicator computed again
        strat = get_strategy(name)
        return simulate(fresh, strat.targets(fresh), cash=10_000, fee=0.001)

    singles = {}
    for name in sorted(STRATEGIES):
        seconds, result = best_of(functools.partial(one, name), 5)
        singles[name] = {"seconds": round(seconds, 4), "trades": result.metrics["trades"]}
    report["single_backtest_s"] = singles

    closes_dec = [Decimal(repr(c)) for c in bars.close.tolist()]
    opens, closes = bars.open.tolist(), bars.close.tolist()
    ref_seconds, ref_final = best_of(lambda: naive_backtest(closes_dec, opens, closes, 10, 30), 1)
    fast_final = one("sma_cross").metrics["final_equity"]
    report["reference_single_sma_cross_s"] = round(ref_seconds, 3)
    report["reference_agrees"] = abs(ref_final / fast_final - 1) < 1e-9
    report["single_speedup_x"] = round(ref_seconds / singles["sma_cross"]["seconds"], 1)
    report["peak_rss_after_single_mb"] = round(peak_rss_mb(pid), 1)

    sweeps: dict[str, Any] = {}
    for name, grid in (("sma_cross", SWEEP_SMA), ("rsi_reversion", SWEEP_RSI)):
        fresh = bars.slice(0)
        count = len(combinations(grid))
        started = time.perf_counter()
        result = sweep(fresh, get_strategy(name), grid, metric="sharpe", cash=10_000, fee=0.001)
        seconds = time.perf_counter() - started
        best = result.best
        sweeps[name] = {
            "combinations": count,
            "ranked": len(result.ranked),
            "seconds": round(seconds, 2),
            "per_combination_ms": round(1000 * seconds / count, 2),
            "best": best.params if best else None,
            "best_sharpe": round(best.metrics["sharpe"] or 0, 3) if best else None,
        }
    report["sweep"] = sweeps
    report["peak_rss_after_sweeps_mb"] = round(peak_rss_mb(pid), 1)
    # Python allocations of a sweep, traced apart from the timed runs (tracing slows them down by about half).
    tracemalloc.start()
    sweep(bars.slice(0), get_strategy("sma_cross"), {"fast": SWEEP_SMA["fast"], "slow": SWEEP_SMA["slow"][:5]},
          metric="sharpe", cash=10_000, fee=0.001)  # fmt: skip
    report["sweep_100_traced_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    tracemalloc.stop()

    sample = combinations(SWEEP_SMA)[:REFERENCE_SAMPLE]
    started = time.perf_counter()
    for combo in sample:
        naive_backtest(closes_dec, opens, closes, int(combo["fast"]), int(combo["slow"]))
    per_combo = (time.perf_counter() - started) / len(sample)
    report["reference_sweep_sma_cross_s"] = {
        "measured_combinations": len(sample),
        "per_combination_ms": round(1000 * per_combo, 1),
        "scaled_to_1000_s": round(per_combo * 1000, 1),
    }
    report["sweep_speedup_x"] = round(per_combo * 1000 / sweeps["sma_cross"]["seconds"], 1)
    return report


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the figures (and write them as JSON when asked)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--klines", type=Path, help="folder of BTCUSDT-1h-*.csv or .zip (default: the bundled zips)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    folder = klines_dir(args.klines)
    report = run(folder)
    print(f"backtest benchmark: {report['bars']:,} hourly bars from {folder}")
    print_report(report)
    single = report["single_backtest_s"]["sma_cross"]["seconds"]
    sweep_s = report["sweep"]["sma_cross"]["seconds"]
    print(f"  targets: one backtest < 1 s ({single:.3f} s), 1,000-combination sweep < 60 s ({sweep_s:.1f} s)")
    median = statistics.median(v["seconds"] for v in report["single_backtest_s"].values())
    print(f"  median single backtest over the strategies: {median:.3f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
