"""``manage.py backtest``: one backtest on stored candles, or a parameter sweep (``--grid``), printed as a table.

A single run is stored as a :class:`~backtest.models.BacktestRun` (``--no-save`` skips that) and its full result
can be written with ``--json FILE``. The work is in :mod:`backtest.runs` and :mod:`backtest.sweep`.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from analytics.models import INTERVAL_SECONDS
from backtest import runs
from backtest.data import load_bars
from backtest.engine import METRICS
from backtest.models import BacktestRun
from backtest.strategies import STRATEGIES, get_strategy
from backtest.sweep import SweepResult, parse_grid, sweep

TABLE_METRICS = ("total_return", "sharpe", "max_drawdown", "trades", "win_rate", "exposure")


def _date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise CommandError(f"not a date (YYYY-MM-DD): {raw!r}") from exc


def _decimal(name: str, raw: str) -> Decimal:
    try:
        return Decimal(raw)
    except InvalidOperation as exc:
        raise CommandError(f"--{name} must be a number, not {raw!r}") from exc


def _key_values(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--param expects name=value, not {pair!r}")
        out[key.strip()] = value.strip()
    return out


def fmt(metric: str, value: Any) -> str:
    """A metric for a terminal table."""
    if value is None:
        return "—"
    if metric in ("trades", "bars"):
        return str(value)
    if metric in ("total_return", "max_drawdown", "buy_and_hold_return", "cagr", "win_rate", "exposure"):
        return f"{value:+.2%}" if metric in ("total_return", "buy_and_hold_return", "cagr") else f"{value:.2%}"
    return f"{value:,.2f}" if metric in ("final_equity", "fees") else f"{value:.3f}"


class TextProgress:
    """A one-line progress bar on a stream (no dependency): done/total, percent and rate, redrawn at most 10/s."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream, self.label = stream, label
        self.started = time.monotonic()
        self.drawn = 0.0

    def __call__(self, done: int, total: int) -> None:
        """Redraw the bar for ``done`` of ``total``, at most every 0.1 s except the last call (which ends the line)."""
        now = time.monotonic()
        if done < total and now - self.drawn < 0.1:
            return
        self.drawn = now
        rate = done / max(now - self.started, 1e-9)
        filled = int(30 * done / max(total, 1))
        bar = "#" * filled + "." * (30 - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {done / max(total, 1):.0%} {rate:,.0f}/s")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


class Command(BaseCommand):
    """Run one backtest, or a sweep with ``--grid``, on stored candles; stored unless ``--no-save``."""

    help = "Backtest a strategy on stored candles (or sweep a parameter grid) and print the metrics."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the run (strategy, pair, interval, days, params, fee, cash), the sweep options and ``--list``."""
        parser.add_argument("--strategy", help=f"one of: {', '.join(sorted(STRATEGIES))}")
        parser.add_argument("--exchange", default="binance")
        parser.add_argument("--symbol")
        parser.add_argument("--interval", default="1h", choices=list(INTERVAL_SECONDS))
        parser.add_argument("--from", dest="date_from", help="first day, UTC, inclusive (YYYY-MM-DD)")
        parser.add_argument("--to", dest="date_to", help="last day, UTC, inclusive (YYYY-MM-DD)")
        parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
        parser.add_argument("--fee", default="0.001", help="fee per fill, as a fraction (default 0.001)")
        parser.add_argument("--cash", default="10000", help="initial cash (default 10000)")
        parser.add_argument("--json", dest="json_path", help="write the full result as JSON to this file")
        parser.add_argument("--grid", action="append", default=[], metavar="NAME=START:STOP:STEP|A,B,C")
        parser.add_argument("--metric", default="sharpe", choices=list(METRICS), help="sweep ranking (sharpe)")
        parser.add_argument("--train-until", help="sweep: rank on bars up to this day, then test the best after it")
        parser.add_argument("--top", type=int, default=10, help="sweep: rows of the ranking to print")
        parser.add_argument("--no-save", action="store_true", help="do not store the run as a BacktestRun")
        parser.add_argument(
            "--reuse",
            action="store_true",
            help="store nothing when the same run on the same stored bars is already stored (make demo re-runs)",
        )
        parser.add_argument("--list", action="store_true", help="list the strategies and their parameters")

    def handle(self, *args: Any, **options: Any) -> None:
        """Validate the options (CommandError naming a bad or missing one, or an empty range), then run or sweep."""
        if options["list"]:
            for name, strat in sorted(STRATEGIES.items()):
                params = " ".join(f"{k}={v}" for k, v in strat.defaults.items())
                self.stdout.write(f"{name:20} {params:32} {strat.description}")
            return
        for required in ("strategy", "symbol", "date_from", "date_to"):
            if not options[required]:
                flag = {"date_from": "from", "date_to": "to"}.get(required, required)
                raise CommandError(f"--{flag} is required")
        spec = runs.RunSpec(
            strategy=options["strategy"],
            exchange=options["exchange"].lower(),
            symbol=options["symbol"].upper(),
            interval=options["interval"],
            date_from=_date(options["date_from"]),
            date_to=_date(options["date_to"]),
            params=_key_values(options["param"]),
            cash=_decimal("cash", options["cash"]),
            fee=_decimal("fee", options["fee"]),
        )
        try:
            run = runs.prepare(spec)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        bars = load_bars(run.exchange, run.symbol, run.interval, run.date_from, run.date_to)
        if len(bars) == 0:
            raise CommandError(
                f"no {run.interval} candles stored for {run.exchange}:{run.symbol} "
                f"from {run.date_from} to {run.date_to}"
            )
        if options["grid"]:
            self._sweep(run, bars, options)
        else:
            self._single(run, bars, options)

    def _single(self, run: BacktestRun, bars: Any, options: dict[str, Any]) -> None:
        try:
            result = runs.run_on(run, bars)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        runs.store_result(run, bars, result)
        self.stdout.write(
            f"{run.strategy} {json.dumps(run.params)} on {run.exchange}:{run.symbol} {run.interval}, "
            f"{len(bars)} bars {run.date_from}..{run.date_to} (sha256 {bars.digest[:12]})"
        )
        for metric in METRICS:
            self.stdout.write(f"  {metric:20} {fmt(metric, result.metrics[metric])}")
        if options["json_path"]:
            Path(options["json_path"]).write_text(json.dumps(result.as_json()))
            self.stdout.write(f"wrote {options['json_path']}")
        if options["no_save"]:
            return
        if options["reuse"] and (same := runs.stored_twin(run)) is not None:
            self.stdout.write(f"already stored as run {same.pk} (same run, same bars): /backtests/{same.pk}/")
        else:
            run.status = BacktestRun.Status.DONE
            run.progress = 1.0
            run.started_at = run.finished_at = timezone.now()
            run.save()
            self.stdout.write(f"stored as run {run.pk}: /backtests/{run.pk}/")

    def _sweep(self, run: BacktestRun, bars: Any, options: dict[str, Any]) -> None:
        try:
            grid = dict(parse_grid(spec) for spec in options["grid"])
            train_until = _date(options["train_until"]) if options["train_until"] else None
            result = sweep(
                bars,
                get_strategy(run.strategy),
                grid,
                base=run.params,
                metric=options["metric"],
                cash=float(run.cash),
                fee=float(run.fee),
                train_until=train_until,
                progress=TextProgress(sys.stderr, "sweep"),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self._print_sweep(result, grid, options["top"])
        if options["json_path"]:
            Path(options["json_path"]).write_text(json.dumps(sweep_json(result)))
            self.stdout.write(f"wrote {options['json_path']}")

    def _print_sweep(self, result: SweepResult, grid: dict[str, Any], top: int) -> None:
        split = f", in sample {result.in_sample_bars} bars" if result.out_of_sample is not None else ""
        self.stdout.write(
            f"{len(result.ranked)} combinations ranked by {result.metric}{split}"
            + (f" ({len(result.skipped)} skipped as invalid)" if result.skipped else "")
        )
        names = list(grid)
        columns = [*names, *TABLE_METRICS]
        self.stdout.write("  ".join(f"{c:>13}" for c in ["rank", *columns]))
        for rank, row in enumerate(result.ranked[:top], start=1):
            cells = [str(row.params[n]) for n in names] + [fmt(m, row.metrics[m]) for m in TABLE_METRICS]
            self.stdout.write("  ".join(f"{c:>13}" for c in [str(rank), *cells]))
        if result.out_of_sample is not None and result.best is not None:
            self.stdout.write(
                f"best {json.dumps(result.best.params)}: in sample ({result.in_sample_bars} bars) "
                f"vs out of sample ({result.out_of_sample_bars} bars)"
            )
            for metric in METRICS:
                self.stdout.write(
                    f"  {metric:20} {fmt(metric, result.best.metrics[metric]):>12} "
                    f"{fmt(metric, result.out_of_sample[metric]):>12}"
                )


def sweep_json(result: SweepResult) -> dict[str, Any]:
    """A sweep as JSON: the metric, every ranked combination, and the out-of-sample metrics of the best."""
    return {
        "metric": result.metric,
        "ranked": [{"params": r.params, "metrics": r.metrics} for r in result.ranked],
        "skipped": [{"params": p, "reason": reason} for p, reason in result.skipped],
        "in_sample_bars": result.in_sample_bars,
        "out_of_sample_bars": result.out_of_sample_bars,
        "out_of_sample": result.out_of_sample,
    }
