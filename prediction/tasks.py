"""Celery tasks of the ``ml`` queue (CELERY_TASK_ROUTES): live inference and scheduled retraining."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from celery import shared_task
from django.conf import settings

logger = logging.getLogger(__name__)


@shared_task(name="prediction.tasks.predict_closed", acks_late=True, max_retries=3)
def predict_closed(exchange: str, symbol: str, end_ms: int) -> list[int]:
    """Dispatched by the candle update path when a bar of an active model's interval has closed."""
    # scikit-learn is imported by the tasks that use it: every worker imports this module (autodiscovery), and
    # the analytics and alerts workers need not carry it.
    from prediction import live

    return live.predict_closed(exchange, symbol, end_ms)


def parse_series(entry: str) -> tuple[str, str, str]:
    """``exchange:symbol:interval`` from PREDICTION_SERIES."""
    parts = entry.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"PREDICTION_SERIES: expected exchange:symbol:interval, got {entry!r}")
    return parts[0].lower(), parts[1].upper(), parts[2]


# Training holds a worker process for minutes: its limits are its own, not the analytics tasks' two.
@shared_task(name="prediction.tasks.retrain", acks_late=True, soft_time_limit=3000, time_limit=3600)
def retrain(
    exchange: str,
    symbol: str,
    interval: str,
    days: int | None = None,
    horizon: int = 1,
    folds: int = 5,
    seed: int = 0,
    start_day: str | None = None,
    end_day: str | None = None,
) -> dict[str, Any]:
    """Train on the last ``days`` days of stored candles up to yesterday (or ``start_day``..``end_day``, ISO
    dates) and make the new model the active one."""
    from prediction.training import TrainSpec, train

    end = date.fromisoformat(end_day) if end_day else datetime.now(UTC).date() - timedelta(days=1)
    start = (
        date.fromisoformat(start_day)
        if start_day
        else end - timedelta(days=(days or settings.PREDICTION_TRAIN_DAYS) - 1)
    )
    spec = TrainSpec(
        exchange, symbol, interval, start, end, horizon, folds, seed, threshold=settings.PREDICTION_THRESHOLD
    )
    row, report = train(spec)
    logger.info("prediction model %s trained in %.1f s", row.pk, row.training_seconds)
    return {"id": row.pk, "seconds": row.training_seconds, "peak_rss_kb": peak_rss_kb(), **report.overall}


@shared_task(name="prediction.tasks.retrain_all", acks_late=True)
def retrain_all() -> int:
    """The beat entry: one retraining task per configured series (each on the ``ml`` queue)."""
    for entry in settings.PREDICTION_SERIES:
        retrain.delay(*parse_series(entry))
    return len(settings.PREDICTION_SERIES)


def peak_rss_kb() -> int | None:
    """VmHWM of this process (Linux): the peak resident memory, the figure the docs report for training."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
