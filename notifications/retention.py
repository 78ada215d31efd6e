"""Delivery retention: ``sent`` and ``dead`` outbox rows older than ``NOTIFICATIONS_DELIVERY_RETENTION_DAYS`` go.

A row's age is its ``created_at`` (when the firing enqueued it): a delivery ends within hours of it (at most
``NOTIFY_MAX_ATTEMPTS`` attempts, each backoff at most ``NOTIFY_BACKOFF_MAX_SECONDS``). ``pending`` and ``sending``
rows are never purged, whatever their age. The alerts themselves, in-app notifications and destinations are kept.
Rows go in batches of at most ``RETENTION_BATCH_SIZE``, each statement committed on its own (autocommit), so no
lock is held for long and the senders' claims are never blocked for more than one batch.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from notifications.models import Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

FINISHED = (DeliveryStatus.SENT.value, DeliveryStatus.DEAD.value)

# One batch: the ids come from the partial index on finished rows' created_at (delivery_finished_created), so a
# batch reads only expired rows however large the outbox is.
_DELETE_BATCH = f"""
DELETE FROM {Delivery._meta.db_table}
WHERE id IN (
    SELECT id FROM {Delivery._meta.db_table}
    WHERE status = ANY(%(finished)s) AND created_at < %(cutoff)s
    ORDER BY created_at
    LIMIT %(limit)s
)
"""


def delivery_cutoff(now: datetime | None = None, days: int | None = None) -> datetime:
    """Finished deliveries created strictly before this instant are expired."""
    keep = settings.NOTIFICATIONS_DELIVERY_RETENTION_DAYS if days is None else days
    return (now or timezone.now()) - timedelta(days=keep)


def purge_deliveries(
    now: datetime | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> int:
    """Delete the expired ``sent`` and ``dead`` deliveries in bounded batches, until none is left (or
    ``max_batches`` ran); answer how many went. Must run outside a transaction, so each batch commits alone."""
    size = settings.RETENTION_BATCH_SIZE if batch_size is None else batch_size
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    cutoff = delivery_cutoff(now)
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        with connections[using].cursor() as cur:
            cur.execute(_DELETE_BATCH, {"finished": list(FINISHED), "cutoff": cutoff, "limit": size})
            count = cur.rowcount
        deleted += count
        batches += 1
        if count < size:
            break
    logger.info("delivery retention applied", extra={"cutoff": cutoff.isoformat(), "deleted": deleted})
    return deleted
