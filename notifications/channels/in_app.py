"""In-app: a :class:`~notifications.models.Notification` row (the notifications list), then a live toast pushed
over Channels to the owner's group (``notifications.consumers``). The row is keyed by the delivery's key, so a
repeated attempt never lists a message twice; the toast is best effort (a page that was closed reads the list).
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from notifications.channels.base import Deadline
from notifications.groups import user_group
from notifications.models import Delivery, Notification

logger = logging.getLogger(__name__)

# The sender runs these in its own thread (they write to the database), not in its pool of network senders.
USES_DATABASE = True


def target(delivery: Delivery) -> str:
    """In-app needs no circuit breaker: the database is the sender's own."""
    return ""


def send(delivery: Delivery, deadline: Deadline) -> None:
    """Store the notification (once per key) and push a toast to the owner's open pages."""
    notify(delivery.destination.owner_id, delivery.key, delivery.subject, delivery.body, delivery.payload)


def notify(owner_id: int, key: str, subject: str, body: str, data: dict[str, Any] | None = None) -> bool:
    """Store one notification (nothing when ``key`` exists) and push its toast; True when it is new. ``data``: the
    message's structured fields (an alert's id, market, price, ...), pushed along so an open page can show them."""
    _row, created = Notification.objects.get_or_create(
        key=key, defaults={"owner_id": owner_id, "subject": subject[:200], "body": body}
    )
    if not created:
        return False
    layer = get_channel_layer()
    if layer is None:
        return True
    toast = {"key": key, "subject": subject[:200], "body": body[:1000], "data": data or {}}
    event = {"type": "push", "payload": {"toast": toast}}
    try:
        async_to_sync(layer.group_send)(user_group(owner_id), event)
    except Exception:
        logger.warning("in-app toast not pushed", exc_info=True, extra={"owner": owner_id})
    return True
