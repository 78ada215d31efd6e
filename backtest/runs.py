"""Backtest runs as stored rows: validate and create one, execute it (the task and the command), store results.

The form, the API and ``manage.py backtest`` all go through :func:`prepare` (one validation, one error text) and
:func:`execute` (one way to load the bars, run and store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, models
from django.utils import timezone

from analytics.models import INTERVAL_SECONDS
from backtest.data import load_bars
from backtest.engine import Bars, Result, simulate
from backtest.models import BacktestRun
from backtest.strategies import ParamValueError, get_strategy
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


class SpecError(ValueError):
    """A run that cannot be made; ``field`` names the field at fault as the API calls it (``cash``, ``to``,
    ``params.fast``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class RunLimitError(Exception):
    """The user already has ``limit`` runs waiting or running (``BACKTEST_MAX_CONCURRENT_PER_USER``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"you already have {limit} backtests waiting or running (at most {limit}); "
            "start another once one of them has finished"
        )
        self.limit = limit


# Sane bounds: cash fits the column (numeric(20, 2)) with room for any equity a run reaches, and a fee above 10% a
# side is a typo. Outside them a run is refused up front, never a database error (a 500) or a worker failure later.
MIN_CASH = Decimal("1")
MAX_CASH = Decimal("1000000000000")
MAX_FEE = Decimal("0.1")
# A run pending or running for longer than this is stuck (a lost task; the task's own limit is minutes): it no longer
# counts against its user's BACKTEST_MAX_CONCURRENT_PER_USER.
STUCK_AFTER = timedelta(hours=1)
# The advisory lock's first key (any constant of our own); the second is the user's id, 0 for anonymous runs.
_RUN_LIMIT_LOCK = 0x62747374


def expected_bars(interval: str, date_from: date, date_to: date) -> int:
    """The most bars of ``interval`` the days ``date_from`` to ``date_to`` (inclusive) can hold."""
    return ((date_to - date_from).days + 1) * 86_400 // INTERVAL_SECONDS[interval]


def prepare(spec: RunSpec) -> BacktestRun:
    """An unsaved pending run for ``spec``, every field validated; a :class:`SpecError` says what is wrong and
    names the field."""
    try:
        strategy = get_strategy(spec.strategy)
    except ValueError as exc:
        raise SpecError("strategy", str(exc)) from exc
    try:
        params = strategy.params(spec.params)
    except ParamValueError as exc:
        raise SpecError(f"params.{exc.key}", str(exc)) from exc
    except ValueError as exc:
        raise SpecError("params", str(exc)) from exc
    if spec.interval not in INTERVAL_SECONDS:
        raise SpecError("interval", f"unknown interval {spec.interval!r}; one of {', '.join(INTERVAL_SECONDS)}")
    if spec.date_to < spec.date_from:
        raise SpecError("to", f"the end date {spec.date_to} is before the start date {spec.date_from}")
    if not spec.cash.is_finite() or not spec.cash > 0:
        raise SpecError("cash", f"cash must be positive, got {spec.cash}")
    if not MIN_CASH <= spec.cash <= MAX_CASH:
        raise SpecError("cash", f"cash must be between {MIN_CASH} and {MAX_CASH}, got {spec.cash}")
    if not spec.fee.is_finite() or not 0 <= spec.fee <= MAX_FEE:
        raise SpecError("fee", f"fee must be in [0, {MAX_FEE}], got {spec.fee}")
    bars = expected_bars(spec.interval, spec.date_from, spec.date_to)
    if bars > settings.BACKTEST_MAX_BARS:
        raise SpecError(
            "to",
            f"{spec.date_from} to {spec.date_to} holds up to {bars} {spec.interval} bars; a run reads at most "
            f"{settings.BACKTEST_MAX_BARS} (BACKTEST_MAX_BARS): shorten the range or choose a longer interval",
        )
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


def save_within_limit(run: BacktestRun, user_id: int | None, limit: int) -> BacktestRun:
    """Save the prepared ``run`` for user ``user_id`` (``None``: anonymous, one shared budget) unless that user already
    has ``limit`` runs waiting or running (:class:`RunLimitError`). Call it inside a transaction.

    A transaction-scoped advisory lock per user makes the count and the insert one step: two requests at once cannot
    both see ``limit - 1``.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_RUN_LIMIT_LOCK, (user_id or 0) % 2**31])
    owner = models.Q(owner__isnull=True) if user_id is None else models.Q(owner_id=user_id)
    unfinished = BacktestRun.objects.filter(
        owner,
        status__in=(BacktestRun.Status.PENDING, BacktestRun.Status.RUNNING),
        created_at__gte=timezone.now() - STUCK_AFTER,
    )
    if unfinished.count() >= limit:
        raise RunLimitError(limit)
    run.owner_id = user_id
    run.save()
    return run


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
