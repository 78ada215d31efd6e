"""In-app: a :class:`~notifications.models.Notification` row (the notifications list), then a live toast pushed
over Channels to the owner's group (``notifications.consumers``). The row is keyed by the delivery's key, so a
repeated attempt never lists a message twice; the toast is best effort (a page that was closed reads the list).

The sender hands a claimed batch to :func:`send_many`: one ``INSERT ... ON CONFLICT DO NOTHING`` for all its rows and
one event-loop round trip for all its toasts. One at a time, each delivery cost a savepointed ``get_or_create`` and
an ``async_to_sync`` call that opened its own Redis connection: about 30 ms, which an alert storm outran.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

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
    _push([(owner_id, _toast(key, subject, body, data))])
    return True


def send_many(deliveries: Sequence[Delivery], deadline: Deadline) -> None:
    """:func:`send` for many deliveries: their notifications stored in one statement (each key once) and the new
    ones' toasts pushed in one round trip. Raises what the database raises (the caller then tries them one by one)."""
    rows = [(d.destination.owner_id, d.key, d.subject[:200], d.body) for d in deliveries]
    created = _store(rows)
    toasts = [
        (d.destination.owner_id, _toast(d.key, d.subject, d.body, d.payload)) for d in deliveries if d.key in created
    ]
    _push(toasts)


def _store(rows: Sequence[tuple[int, str, str, str]]) -> set[str]:
    """Insert the (owner, key, subject, body) notifications whose key is new; returns the keys inserted."""
    if not rows:
        return set()
    owners, keys, subjects, bodies = (list(column) for column in zip(*rows, strict=True))
    table = Notification._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (owner_id, key, subject, body)"
            " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])"
            " ON CONFLICT (key) DO NOTHING RETURNING key",
            [owners, keys, subjects, bodies],
        )
        return {str(row[0]) for row in cursor.fetchall()}


def _toast(key: str, subject: str, body: str, data: dict[str, Any] | None) -> dict[str, Any]:
    """The push event of one notification."""
    toast = {"key": key, "subject": subject[:200], "body": body[:1000], "data": data or {}}
    return {"type": "push", "payload": {"toast": toast}}


def _push(toasts: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Send (owner, event) toasts in one event-loop round trip; best effort (the list holds them anyway)."""
    layer = get_channel_layer()
    if layer is None or not toasts:
        return

    async def send_all() -> None:
        for owner_id, event in toasts:
            await layer.group_send(user_group(owner_id), event)

    try:
        async_to_sync(send_all)()
    except Exception:
        logger.warning("in-app toasts not pushed", exc_info=True, extra={"toasts": len(toasts)})
