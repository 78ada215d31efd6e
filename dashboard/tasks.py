"""Celery tasks on the ``alerts`` queue: whale-alert fan-out and delivery (thin wrappers over
:mod:`dashboard.delivery`)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from redis.exceptions import RedisError

from analytics.whales import DELIVER_NEW_ALERTS
from dashboard.delivery import Outcome, attempt_delivery, fan_out, stale_pending

logger = logging.getLogger(__name__)

MAX_RETRIES = 6
BACKOFF_BASE_SECONDS = 2
BACKOFF_MAX_SECONDS = 300
MAX_ALERTS_PER_FANOUT = 500
# Errors of the infrastructure (PostgreSQL restarting, Redis unreachable while queueing): the task runs again
# with exponential backoff and jitter; anything left pending is re-queued by beat (requeue_pending_deliveries).
INFRA_ERRORS = (OperationalError, InterfaceError, RedisError)


# The delivery tasks' retries of infrastructure errors: exponential backoff with jitter, the same for every task.
RETRY_OPTIONS: dict[str, Any] = {
    "autoretry_for": INFRA_ERRORS,
    "retry_backoff": BACKOFF_BASE_SECONDS,
    "retry_backoff_max": BACKOFF_MAX_SECONDS,
    "retry_jitter": True,
    "max_retries": MAX_RETRIES,
}


def backoff_seconds(retries: int) -> int:
    """Exponential backoff: 2, 4, 8, ... seconds, capped at five minutes."""
    return int(min(BACKOFF_BASE_SECONDS * 2**retries, BACKOFF_MAX_SECONDS))


@shared_task(
    name=DELIVER_NEW_ALERTS,
    ignore_result=True,
    **RETRY_OPTIONS,
)
def deliver_new_alerts(alert_ids: list[int]) -> int:
    """Create the deliveries for new alerts and queue one ``deliver_alert`` per (alert, subscription).

    At most ``MAX_ALERTS_PER_FANOUT`` alerts per run: the rest is queued again as another run, so one huge
    replay never becomes one huge task.
    """
    ids = sorted(set(alert_ids))
    if len(ids) > MAX_ALERTS_PER_FANOUT:
        deliver_new_alerts.delay(ids[MAX_ALERTS_PER_FANOUT:])
        ids = ids[:MAX_ALERTS_PER_FANOUT]
    pairs = fan_out(ids)
    for alert_id, subscription_id in pairs:
        deliver_alert.delay(alert_id, subscription_id)
    if pairs:
        logger.info("alert deliveries queued", extra={"alerts": len(ids), "deliveries": len(pairs)})
    return len(pairs)


@shared_task(
    bind=True,
    name="dashboard.tasks.deliver_alert",
    ignore_result=True,
    **RETRY_OPTIONS,
)
def deliver_alert(self: Task, alert_id: int, subscription_id: int) -> str:
    """Send one alert to one subscription (webhook or e-mail); retries network errors and 5xx with backoff."""
    retries = int(self.request.retries or 0)
    result = attempt_delivery(alert_id, subscription_id, final=retries >= MAX_RETRIES)
    extra = {
        "alert_id": alert_id,
        "subscription_id": subscription_id,
        "outcome": result.outcome.value,
        "attempts": result.attempts,
    }
    if result.outcome is Outcome.RETRY:
        countdown = backoff_seconds(retries)
        logger.warning("alert delivery failed, retrying", extra={**extra, "error": result.error, "in_s": countdown})
        raise self.retry(countdown=countdown, max_retries=MAX_RETRIES)
    if result.outcome is Outcome.FAILED:
        logger.error("alert delivery failed", extra={**extra, "error": result.error})
    else:
        logger.info("alert delivery", extra=extra)
    return result.outcome.value


@shared_task(
    name="dashboard.tasks.requeue_pending_deliveries",
    ignore_result=True,
    **RETRY_OPTIONS,
)
def requeue_pending_deliveries() -> int:
    """Beat job: queue ``deliver_alert`` again for deliveries pending longer than ``ALERT_REQUEUE_AFTER_SECONDS``.

    Safe to overlap with a live retry: the row lock and the ``sent`` status make a duplicate task a no-op.
    """
    pairs = stale_pending(settings.ALERT_REQUEUE_AFTER_SECONDS)
    for alert_id, subscription_id in pairs:
        deliver_alert.delay(alert_id, subscription_id)
    if pairs:
        logger.warning("pending alert deliveries re-queued", extra={"deliveries": len(pairs)})
    return len(pairs)
