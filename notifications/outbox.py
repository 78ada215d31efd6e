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


def destinations_by_owner(
    owner_ids: Collection[int], kinds: Collection[str], in_app_owners: Collection[int] = ()
) -> dict[int, list[Destination]]:
    """Every active destination of ``owner_ids`` on ``kinds``, by owner, in id order: one query for all owners.

    In-app needs no address: the in-app destination of each of ``in_app_owners`` is created on first use (one
    statement for all)."""
    if not owner_ids:
        return {}
    if in_app_owners:
        Destination.objects.bulk_create(
            [Destination(owner_id=owner_id, kind=ChannelKind.IN_APP, target="") for owner_id in sorted(in_app_owners)],
            ignore_conflicts=True,
        )
    found: dict[int, list[Destination]] = {owner_id: [] for owner_id in owner_ids}
    rows = Destination.objects.filter(owner_id__in=list(owner_ids), kind__in=list(kinds), active=True).order_by("pk")
    for destination in rows:
        found[destination.owner_id].append(destination)
    return found


def _chosen(destinations: list[Destination], channels: Collection[str], only: Collection[int]) -> list[Destination]:
    """Those of ``destinations`` on ``channels``; with ``only``, just those ids and the in-app one."""
    return [
        d
        for d in destinations
        if d.kind in channels and (not only or d.pk in only or (d.kind == ChannelKind.IN_APP and d.target == ""))
    ]


def enqueue(outgoing: Iterable[Outgoing]) -> int:
    """Create the deliveries of ``outgoing`` (one per destination) in a fixed number of statements whatever the
    number of messages and owners; returns how many rows are new. Call it inside the transaction that records what
    the messages are about."""
    items = list(outgoing)
    kinds = {kind for item in items for kind in item.channels}
    in_app = {item.owner_id for item in items if ChannelKind.IN_APP in item.channels}
    by_owner = destinations_by_owner({item.owner_id for item in items}, kinds, in_app)
    rows: list[Delivery] = []
    for item in items:
        only = set(item.destination_ids)
        for destination in _chosen(by_owner[item.owner_id], item.channels, only):
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
