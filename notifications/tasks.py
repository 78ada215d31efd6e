"""Celery tasks on the ``notify`` queue: the outbox sender (:mod:`notifications.sender`)."""

from __future__ import annotations

import logging

from celery import shared_task

from notifications import sender

logger = logging.getLogger(__name__)

SEND_DUE = "notifications.tasks.send_due"


@shared_task(name=SEND_DUE, ignore_result=True)
def send_due() -> dict[str, int]:
    """Send every due delivery (batches, for at most ``NOTIFY_RUN_SECONDS``). Run by beat and after each firing's
    commit; overlapping runs are safe (each claims other rows: ``SKIP LOCKED``)."""
    totals = sender.run()
    if any(totals.values()):
        logger.info("outbox sender run", extra=totals)
    return totals
