"""Putting messages in the outbox: :func:`enqueue`, called inside the transaction of whatever fires them.

One :class:`~notifications.models.Delivery` per destination, keyed ``<message key>:<destination id>``; enqueuing a
message again (a replayed batch) adds nothing. Sending is the senders' job (docs/ALERTS.md, "Delivery").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from notifications.models import ChannelKind, DeliveryStatus, WebhookFormat

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


class Target(NamedTuple):
    """The fields of an active destination that choosing it needs."""

    pk: int
    owner_id: int
    kind: str
    target: str


# Raw statements: the ORM's bulk_create spent more time preparing a batch's rows than PostgreSQL took to insert them
# (docs/BENCHMARKS.md, "Alert rules").
_CREATE_IN_APP = """
INSERT INTO notifications_destination (owner_id, kind, target, format, secret, active)
SELECT o, %s, '', %s, '', true FROM unnest(%s::bigint[]) AS o
ON CONFLICT (owner_id, kind, target) DO NOTHING
"""

_DESTINATIONS = """
SELECT id, owner_id, kind, target FROM notifications_destination
WHERE owner_id = ANY(%s::bigint[]) AND kind = ANY(%s::text[]) AND active
ORDER BY id
"""

_INSERT_DELIVERIES = """
WITH inserted AS (
    INSERT INTO notifications_delivery (destination_id, kind, key, subject, body, payload, status, attempts, last_error)
    SELECT v.destination_id, v.kind, v.key, v.subject, v.body, v.payload::jsonb, %s, 0, ''
    FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
         AS v(destination_id, kind, key, subject, body, payload)
    ON CONFLICT (key) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted
"""


def destinations_by_owner(
    owner_ids: Collection[int],
    kinds: Collection[str],
    in_app_owners: Collection[int] = (),
    using: str = DEFAULT_DB_ALIAS,
) -> dict[int, list[Target]]:
    """Every active destination of ``owner_ids`` on ``kinds``, by owner, in id order: one query for all owners.

    In-app needs no address: the in-app destination of each of ``in_app_owners`` is created on first use (one
    statement for all)."""
    if not owner_ids:
        return {}
    found: dict[int, list[Target]] = {owner_id: [] for owner_id in owner_ids}
    with connections[using].cursor() as cur:
        if in_app_owners:
            cur.execute(_CREATE_IN_APP, [ChannelKind.IN_APP.value, WebhookFormat.GENERIC.value, sorted(in_app_owners)])
        cur.execute(_DESTINATIONS, [sorted(owner_ids), sorted(kinds)])
        for row in cur.fetchall():
            destination = Target(*row)
            found[destination.owner_id].append(destination)
    return found


def _chosen(destinations: list[Target], channels: Collection[str], only: Collection[int]) -> list[Target]:
    """Those of ``destinations`` on ``channels``; with ``only``, just those ids and the in-app one."""
    return [
        d
        for d in destinations
        if d.kind in channels and (not only or d.pk in only or (d.kind == ChannelKind.IN_APP and d.target == ""))
    ]


def enqueue(outgoing: Iterable[Outgoing], using: str = DEFAULT_DB_ALIAS) -> int:
    """Create the deliveries of ``outgoing`` (one per destination) in a fixed number of statements whatever the
    number of messages and owners; returns how many rows are new. Call it inside the transaction that records what
    the messages are about."""
    items = list(outgoing)
    kinds = {kind for item in items for kind in item.channels}
    in_app = {item.owner_id for item in items if ChannelKind.IN_APP in item.channels}
    by_owner = destinations_by_owner({item.owner_id for item in items}, kinds, in_app, using)
    columns: list[list[Any]] = [[], [], [], [], [], []]
    for item in items:
        only = set(item.destination_ids)
        message = item.message
        payload = json.dumps(message.payload)
        for destination in _chosen(by_owner[item.owner_id], item.channels, only):
            row = (destination.pk, destination.kind, f"{message.key}:{destination.pk}", message.subject[:200])
            for column, value in zip(columns, (*row, message.body, payload), strict=True):
                column.append(value)
    if not columns[0]:
        return 0
    with connections[using].cursor() as cur:
        cur.execute(_INSERT_DELIVERIES, [DeliveryStatus.PENDING.value, *columns])
        (new,) = cur.fetchone() or (0,)
    if new:
        # One sender run per committed firing batch (never one per delivery); beat runs it too, so a lost kick
        # (Redis down at that moment) only delays the messages.
        transaction.on_commit(kick, using=using)
    return int(new)


def kick() -> None:
    """Queue one run of the outbox sender now; a broker error is logged, not raised (beat runs it anyway)."""
    from notifications.tasks import send_due

    try:
        # retry=False: with the broker down, fail at once instead of holding the firing's caller in publish retries.
        send_due.apply_async(expires=60, retry=False)
    except Exception:
        logger.warning("outbox sender not kicked (beat will run it)", exc_info=True)
