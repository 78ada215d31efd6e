"""The books' beat tasks: their series' partitions made ahead and dropped after ``BOOK_RETENTION_DAYS``
(:mod:`books.partitions`). Routed to the analytics queue (``CELERY_TASK_ROUTES``)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from analytics.tasks import RETRY_OPTIONS
from books import partitions


@shared_task(name="books.tasks.maintain_partitions", **RETRY_OPTIONS)
def maintain_partitions() -> dict[str, Any]:
    """Beat: make both series' partitions from yesterday to TRADE_PARTITIONS_AHEAD days ahead."""
    return {"created": partitions.maintain()}


@shared_task(name="books.tasks.apply_retention", **RETRY_OPTIONS)
def apply_retention() -> dict[str, Any]:
    """Beat: drop both series' partitions older than BOOK_RETENTION_DAYS."""
    return {"dropped": partitions.apply_retention()}
