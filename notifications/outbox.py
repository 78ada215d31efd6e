"""Putting messages in the outbox: :func:`enqueue`, called inside the transaction of whatever fires them.

One :class:`~notifications.models.Delivery` per destination, keyed ``<message key>:<destination id>``; enqueuing a
message again (a replayed batch) adds nothing. Sending is the senders' job (docs/ALERTS.md, "Delivery").
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from notifications.models import ChannelKind, Delivery, Destination

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """What to send: a key unique to the message (e.g. ``alert:<id>``), a subject, a body and structured fields."""

    key: str
    subject: str
    body: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outgoing:
    """One message for one owner, on the given channels (optionally only to the given destinations)."""

    owner_id: int
    channels: Collection[str]
    message: Message
    destination_ids: Collection[int] = ()


def destinations_for(owner_id: int, channels: Collection[str], only: Collection[int] = ()) -> list[Destination]:
    """The owner's active destinations on ``channels`` (restricted to ``only`` when given). In-app needs no
    address: the owner's in-app destination is created on first use."""
    if ChannelKind.IN_APP in channels:
        Destination.objects.get_or_create(owner_id=owner_id, kind=ChannelKind.IN_APP, target="")
    rows = Destination.objects.filter(owner_id=owner_id, kind__in=list(channels), active=True)
    if only:
        rows = rows.filter(pk__in=list(only)) | Destination.objects.filter(
            owner_id=owner_id, kind=ChannelKind.IN_APP, active=True, target=""
        ).filter(kind__in=list(channels))
    return list(rows.order_by("pk"))


def enqueue(outgoing: Iterable[Outgoing]) -> int:
    """Create the deliveries of ``outgoing`` (one per destination, one statement for all); returns how many rows
    are new. Call it inside the transaction that records what the messages are about."""
    rows: list[Delivery] = []
    cache: dict[tuple[int, tuple[str, ...], tuple[int, ...]], list[Destination]] = {}
    for item in outgoing:
        scope = (item.owner_id, tuple(sorted(item.channels)), tuple(sorted(item.destination_ids)))
        if scope not in cache:
            cache[scope] = destinations_for(item.owner_id, item.channels, item.destination_ids)
        for destination in cache[scope]:
            rows.append(
                Delivery(
                    destination=destination,
                    kind=destination.kind,
                    key=f"{item.message.key}:{destination.pk}",
                    subject=item.message.subject[:200],
                    body=item.message.body,
                    payload=item.message.payload,
                )
            )
    if not rows:
        return 0
    before = Delivery.objects.filter(key__in=[row.key for row in rows]).count()
    Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    new = len(rows) - before
    if new:
        # One sender run per committed firing batch (never one per delivery); beat runs it too, so a lost kick
        # (Redis down at that moment) only delays the messages.
        transaction.on_commit(kick)
    return new


def kick() -> None:
    """Queue one run of the outbox sender now; a broker error is logged, not raised (beat runs it anyway)."""
    from notifications.tasks import send_due

    try:
        # retry=False: with the broker down, fail at once instead of holding the firing's caller in publish retries.
        send_due.apply_async(expires=60, retry=False)
    except Exception:
        logger.warning("outbox sender not kicked (beat will run it)", exc_info=True)
