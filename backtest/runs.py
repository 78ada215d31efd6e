"""Backtest runs as stored rows: validate and create one, execute it (the task and the command), store results.

The form, the API and ``manage.py backtest`` all go through :func:`prepare` (one validation, one error text) and
:func:`execute` (one way to load the bars, run and store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import InterfaceError, OperationalError
from django.utils import timezone

from analytics.models import INTERVAL_SECONDS
from backtest.data import load_bars
from backtest.engine import Bars, Result, simulate
from backtest.models import BacktestRun
from backtest.strategies import get_strategy
from cryptoproject.timeutil import ms_to_datetime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """What to backtest: the strategy and its (raw) parameters, the series and days, cash and fee."""

    strategy: str
    exchange: str
    symbol: str
    interval: str
    date_from: date
    date_to: date
    params: Mapping[str, Any] = field(default_factory=dict)
    cash: Decimal = Decimal("10000")
    fee: Decimal = Decimal("0.001")


def prepare(spec: RunSpec) -> BacktestRun:
    """An unsaved pending run for ``spec``, every field validated; a ``ValueError`` says what is wrong."""
    strategy = get_strategy(spec.strategy)
    params = strategy.params(spec.params)
    if spec.interval not in INTERVAL_SECONDS:
        raise ValueError(f"unknown interval {spec.interval!r}; one of {', '.join(INTERVAL_SECONDS)}")
    if spec.date_to < spec.date_from:
        raise ValueError(f"the end date {spec.date_to} is before the start date {spec.date_from}")
    if not spec.cash > 0:
        raise ValueError(f"cash must be positive, got {spec.cash}")
    if not 0 <= spec.fee < 1:
        raise ValueError(f"fee must be in [0, 1), got {spec.fee}")
    return BacktestRun(
        strategy=strategy.name,
        params=params,
        exchange=spec.exchange,
        symbol=spec.symbol,
        interval=spec.interval,
        date_from=spec.date_from,
        date_to=spec.date_to,
        cash=spec.cash,
        fee=spec.fee,
    )


def run_on(run: BacktestRun, bars: Bars) -> Result:
    """Simulate ``run``'s strategy on ``bars``."""
    strategy = get_strategy(run.strategy)
    targets = strategy.targets(bars, run.params)
    return simulate(bars, targets, cash=float(run.cash), fee=float(run.fee), params=strategy.params(run.params))


def store_result(run: BacktestRun, bars: Bars, result: Result) -> None:
    """Copy ``result`` onto ``run`` (not saved)."""
    run.bars = len(bars)
    run.bars_hash = bars.digest
    run.first_open_time = ms_to_datetime(int(bars.open_time[0]))
    run.last_open_time = ms_to_datetime(int(bars.open_time[-1]))
    body = result.as_json()
    run.metrics = body["metrics"]
    run.equity = body["equity"]
    run.trades = body["trades"]
    run.params = body["params"]


def stored_twin(run: BacktestRun) -> BacktestRun | None:
    """The newest finished run with ``run``'s spec and parameters on the same stored bars (by hash), if any."""
    return (
        BacktestRun.objects.filter(
            status=BacktestRun.Status.DONE,
            strategy=run.strategy,
            params=run.params,
            exchange=run.exchange,
            symbol=run.symbol,
            interval=run.interval,
            date_from=run.date_from,
            date_to=run.date_to,
            cash=run.cash,
            fee=run.fee,
            bars_hash=run.bars_hash,
        )
        .order_by("-created_at", "-id")
        .first()
    )


def _save_progress(run: BacktestRun, progress: float, **fields: Any) -> None:
    run.progress = progress
    for name, value in fields.items():
        setattr(run, name, value)
    run.save(update_fields=["progress", *fields])


def execute(run_id: int, on_progress: Callable[[float], None] | None = None) -> BacktestRun | None:
    """Run the stored run ``run_id`` and store its results; ``None`` when it no longer exists.

    Safe to run twice (a redelivered task): a finished run is left as it is. A run that cannot work (no bars
    in the range, a bad parameter) ends ``failed`` with the reason; any other error fails it and is raised.
    """
    run = BacktestRun.objects.filter(pk=run_id).first()
    if run is None or run.status in (BacktestRun.Status.DONE, BacktestRun.Status.FAILED):
        return run

    def step(value: float, **fields: Any) -> None:
        _save_progress(run, value, **fields)
        if on_progress is not None:
            on_progress(value)

    step(0.05, status=BacktestRun.Status.RUNNING, started_at=timezone.now(), error="")
    try:
        bars = load_bars(run.exchange, run.symbol, run.interval, run.date_from, run.date_to)
        if len(bars) == 0:
            raise ValueError(
                f"no {run.interval} candles stored for {run.exchange}:{run.symbol} "
                f"from {run.date_from} to {run.date_to}"
            )
        step(0.5)
        result = run_on(run, bars)
        step(0.8)
        store_result(run, bars, result)
    except ValueError as exc:
        step(run.progress, status=BacktestRun.Status.FAILED, error=str(exc), finished_at=timezone.now())
        logger.info("backtest failed", extra={"run": run_id, "reason": str(exc)})
        return run
    except (OperationalError, InterfaceError):
        raise  # transient: the task retries, and a run still "running" is run again
    except Exception as exc:
        step(
            run.progress, status=BacktestRun.Status.FAILED, error=f"internal error: {exc!r}", finished_at=timezone.now()
        )
        raise
    run.status = BacktestRun.Status.DONE
    run.finished_at = timezone.now()
    run.progress = 1.0
    run.save()
    if on_progress is not None:
        on_progress(1.0)
    return run
