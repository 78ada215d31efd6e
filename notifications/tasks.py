"""Celery tasks on the ``notify`` queue: the outbox sender (:mod:`notifications.sender`)."""

from __future__ import annotations

import logging

from celery import shared_task

from notifications import retention, sender

logger = logging.getLogger(__name__)

SEND_DUE = "notifications.tasks.send_due"
PURGE_DELIVERIES = "notifications.tasks.purge_deliveries"


@shared_task(name=SEND_DUE, ignore_result=True)
def send_due() -> dict[str, int]:
    """Send every due delivery (batches, for at most ``NOTIFY_RUN_SECONDS``). Run by beat and after each firing's
    commit; overlapping runs are safe (each claims other rows: ``SKIP LOCKED``)."""
    totals = sender.run()
    if any(totals.values()):
        logger.info("outbox sender run", extra=totals)
    return totals


@shared_task(name=PURGE_DELIVERIES, ignore_result=True)
def purge_deliveries() -> dict[str, int]:
    """Beat: delete the ``sent`` and ``dead`` deliveries older than ``NOTIFICATIONS_DELIVERY_RETENTION_DAYS``, in
    bounded batches (:mod:`notifications.retention`); the alerts are kept."""
    return {"deleted": retention.purge_deliveries()}
