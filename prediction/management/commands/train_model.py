"""``manage.py train_model``: walk-forward validation against naive baselines, then the registered model."""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm  # type: ignore[import-untyped]  # no types-tqdm pinned

from analytics.models import INTERVAL_SECONDS
from prediction import learn
from prediction.training import TrainSpec, train


def _date(raw: str) -> date:
    # An argparse type: ArgumentTypeError becomes "argument --from: ..." with the usage (a CommandError raised here
    # escaped argparse as a traceback).
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid date {raw!r} (expected YYYY-MM-DD)") from None


class Command(BaseCommand):
    """Train, print the walk-forward report and register the model (active unless ``--no-activate``)."""

    help = "Train a price-direction model on stored candles, validated walk-forward against naive baselines."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the data (pair, interval, days), the validation (horizon, folds, seed, threshold) and the output."""
        parser.add_argument("--exchange", default="binance")
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--interval", default="1h", choices=list(INTERVAL_SECONDS))
        parser.add_argument("--from", dest="start", required=True, type=_date, help="first day (UTC), inclusive")
        parser.add_argument("--to", dest="end", required=True, type=_date, help="last day (UTC), inclusive")
        parser.add_argument("--horizon", type=int, default=1, help="bars ahead (default 1)")
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--threshold", type=float, default=0.5, help="long when P(up) is above it")
        parser.add_argument("--json", dest="json_path", type=Path, help="write the report here")
        parser.add_argument("--no-activate", action="store_true", help="register without making it active")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        """Validate the options (CommandError naming the bad one, or too few bars), train, then print the report."""
        if opts["horizon"] < 1 or opts["folds"] < 1:
            raise CommandError("--horizon and --folds must be at least 1")
        if not 0 < opts["threshold"] < 1:
            raise CommandError("--threshold must be between 0 and 1")
        if opts["end"] < opts["start"]:
            raise CommandError(f"--to {opts['end']} is before --from {opts['start']}")
        spec = TrainSpec(
            opts["exchange"].lower(),
            opts["symbol"].upper(),
            opts["interval"],
            opts["start"],
            opts["end"],
            opts["horizon"],
            opts["folds"],
            opts["seed"],
            opts["threshold"],
        )
        bar = tqdm(total=spec.folds + 1, unit="fit", desc="train_model", disable=opts["no_progress"])

        def step(done: int, total: int) -> None:
            bar.n = done
            label = f"fold {done}/{spec.folds} done" if done < spec.folds else "final fit"
            bar.set_postfix_str("saved" if done > spec.folds else label)
            bar.refresh()

        try:
            row, report = train(spec, on_step=step, activate=not opts["no_activate"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        data = report.as_json()
        if opts["json_path"]:
            opts["json_path"].write_text(json.dumps({"model_id": row.pk, **data}, indent=2))
        self.stdout.write(format_table(data))
        for line in learn.describe(data):
            self.stdout.write(line)
        self.stdout.write(
            f"model #{row.pk} ({'active' if row.active else 'inactive'}) trained in {row.training_seconds:.1f} s "
            f"on {row.n_bars} bars, saved to {row.artifact}"
        )


def format_table(report: dict[str, Any]) -> str:
    """The per-fold accuracy and log loss of the model and each baseline, as a Markdown table."""
    names = learn.BASELINES
    head = "| fold | test bars | model acc | " + " | ".join(f"{n} acc" for n in names) + " | model logloss | "
    head += " | ".join(f"{n} logloss" for n in names) + " | model return | buy&hold |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]

    def line(label: str, n: int, entry: dict[str, Any], bt: dict[str, Any]) -> str:
        accs = " | ".join(f"{entry['baselines'][k]['accuracy']:.4f}" for k in names)
        losses = " | ".join(f"{entry['baselines'][k]['log_loss']:.4f}" for k in names)
        return (
            f"| {label} | {n} | {entry['model']['accuracy']:.4f} | {accs} | {entry['model']['log_loss']:.4f} | "
            f"{losses} | {bt['model_total_return']:+.2%} | {bt['buy_and_hold_return']:+.2%} |"
        )

    for fold in report["folds"]:
        rows.append(line(str(fold["fold"]), fold["n_test"], fold, fold["backtest"]))
    rows.append(line("all", report["overall"]["n_test"], report["overall"], report["backtest"]))
    return "\n".join(rows)
