"""Read functions for other apps' pages and API (they do not query this app's tables themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from notifications.models import Delivery, DeliveryStatus, Notification


@dataclass(frozen=True)
class DeliveryState:
    """One delivery as its owner sees it (``last_error`` is ours, never the receiver's words)."""

    key: str
    kind: str
    target: str
    status: str
    attempts: int
    last_error: str
    created_at: datetime
    sent_at: datetime | None


def deliveries_of(owner_id: int, key_prefix: str = "", limit: int = 50, dead_only: bool = False) -> list[DeliveryState]:
    """The owner's latest deliveries (of messages whose key starts with ``key_prefix``, e.g. ``alert:12:``)."""
    rows = Delivery.objects.filter(destination__owner_id=owner_id).select_related("destination")
    if key_prefix:
        rows = rows.filter(key__startswith=key_prefix)
    if dead_only:
        rows = rows.filter(status=DeliveryStatus.DEAD)
    return [
        DeliveryState(d.key, d.kind, d.destination.target, d.status, d.attempts, d.last_error, d.created_at, d.sent_at)
        for d in rows.order_by("-pk")[:limit]
    ]


def recent_notifications(owner_id: int, limit: int = 20) -> list[Notification]:
    """The owner's in-app notifications, newest first."""
    return list(Notification.objects.filter(owner_id=owner_id).order_by("-pk")[:limit])
