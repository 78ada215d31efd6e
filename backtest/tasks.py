"""Celery task of the ``analytics`` queue: run one stored backtest (a thin wrapper over :mod:`backtest.runs`)."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from backtest import runs


@shared_task(
    name="backtest.tasks.run_backtest",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=3,
    ignore_result=True,
)
def run_backtest(run_id: int) -> None:
    """Run the :class:`~backtest.models.BacktestRun` ``run_id``; idempotent (a finished run is left alone)."""
    runs.execute(run_id)
