"""Today's whale subscriptions and their deliveries become alert rules, alerts and outbox deliveries.

Forwards, for each ``AlertSubscription``: an ``AlertRule`` (kind ``whale``, the same exchange/symbol, params
``{"min_notional": ...}``, channels ``[its channel]``, destinations ``[a Destination for its target/format]``, the
same ``active`` and creation time). For each ``AlertDelivery``: an ``Alert`` of that rule (trigger
``trade:<trade id of its WhaleAlert>``, the whale's price, trade time and message, fired when the whale was
recorded) and a ``notifications.Delivery`` with the same status (sent -> sent, failed -> dead, pending -> pending),
attempts, last error and times. Pending ones are then sent by the outbox's senders.

Backwards, for each whale rule that the old model can express (one e-mail or webhook destination): the
subscription and, for its alerts whose whale trade is still recorded, the deliveries; those rules, their alerts and
their deliveries are then removed. Rules the old model cannot express (other kinds, in-app, SMS, Telegram) stay.
Destinations stay too (a destination is the user's, not the rule's).
"""

from __future__ import annotations

import secrets
from datetime import UTC
from decimal import Decimal
from typing import Any

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

BATCH = 1000
TO_OUTBOX = {"sent": "sent", "failed": "dead", "pending": "pending"}
FROM_OUTBOX = {"sent": "sent", "dead": "failed", "pending": "pending", "sending": "pending"}


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


def whale_text(whale: Any) -> str:
    """The line the old delivery path sent (``dashboard.delivery.alert_text`` as it was)."""
    notional = f"{whale.notional.quantize(Decimal('1')):,}"
    when = whale.traded_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"Whale {whale.side.upper()} {_plain(whale.quantity)} {whale.symbol} @ {_plain(whale.price)} "
        f"on {whale.exchange} = {notional} ({when})"
    )


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Subscriptions -> rules (+ destinations), deliveries -> alerts + outbox deliveries."""
    db = schema_editor.connection.alias  # `migrate --database`: this database, never the default
    subscription_model = apps.get_model("dashboard", "AlertSubscription")
    delivery_model = apps.get_model("dashboard", "AlertDelivery")
    rule_model = apps.get_model("alerts", "AlertRule")
    alert_model = apps.get_model("alerts", "Alert")
    destination_model = apps.get_model("notifications", "Destination")
    outbox_model = apps.get_model("notifications", "Delivery")

    rule_of: dict[int, Any] = {}
    destination_of: dict[int, Any] = {}
    for sub in subscription_model.objects.using(db).order_by("pk").iterator(chunk_size=BATCH):
        generic = sub.channel == "webhook" and sub.format == "generic"
        destination, _ = destination_model.objects.using(db).get_or_create(
            owner_id=sub.user_id,
            kind=sub.channel,
            target=sub.target,
            defaults={
                "format": sub.format if sub.channel == "webhook" else "generic",
                "secret": secrets.token_urlsafe(32) if generic else "",
            },
        )
        rule = rule_model.objects.using(db).create(
            owner_id=sub.user_id,
            kind="whale",
            exchange=sub.exchange,
            symbol=sub.symbol,
            params={"min_notional": _plain(sub.min_notional) if sub.min_notional else "0"},
            channels=[sub.channel],
            active=sub.active,
            created_at=sub.created_at,
        )
        rule.destinations.set([destination])
        rule_of[sub.pk] = rule
        destination_of[sub.pk] = destination

    deliveries = delivery_model.objects.using(db).select_related("alert").order_by("pk")
    for start in range(0, deliveries.count(), BATCH):
        chunk = list(deliveries[start : start + BATCH])
        alerts = alert_model.objects.using(db).bulk_create(
            [
                alert_model(
                    rule=rule_of[d.subscription_id],
                    kind="whale",
                    exchange=d.alert.exchange,
                    symbol=d.alert.symbol,
                    trigger=f"trade:{d.alert.trade_id}",
                    trade_id=d.alert.trade_id,
                    price=d.alert.price,
                    traded_at=d.alert.traded_at,
                    fired_at=d.alert.created_at,
                    message=whale_text(d.alert),
                    details={
                        "side": d.alert.side,
                        "quantity": _plain(d.alert.quantity),
                        "notional": _plain(d.alert.notional),
                    },
                )
                for d in chunk
            ]
        )
        outbox_model.objects.using(db).bulk_create(
            [
                outbox_model(
                    destination=destination_of[d.subscription_id],
                    kind=destination_of[d.subscription_id].kind,
                    key=f"alert:{alert.pk}:{destination_of[d.subscription_id].pk}",
                    subject=f"Whale alert: {d.alert.side} {d.alert.symbol} on {d.alert.exchange}"[:200],
                    body=alert.message,
                    payload={"alert": alert.pk, "kind": "whale", "trade_id": d.alert.trade_id},
                    status=TO_OUTBOX[d.status],
                    attempts=d.attempts,
                    last_error=d.last_error[:500],
                    sent_at=d.sent_at,
                    created_at=d.created_at,
                    next_attempt_at=d.created_at,
                )
                for d, alert in zip(chunk, alerts, strict=True)
            ]
        )


def backwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Whale rules with one e-mail or webhook destination -> subscriptions and their deliveries."""
    db = schema_editor.connection.alias  # `migrate --database`: this database, never the default
    subscription_model = apps.get_model("dashboard", "AlertSubscription")
    delivery_model = apps.get_model("dashboard", "AlertDelivery")
    rule_model = apps.get_model("alerts", "AlertRule")
    alert_model = apps.get_model("alerts", "Alert")
    outbox_model = apps.get_model("notifications", "Delivery")
    whale_model = apps.get_model("analytics", "WhaleAlert")

    done: list[int] = []
    for rule in rule_model.objects.using(db).filter(kind="whale").prefetch_related("destinations").order_by("pk"):
        destinations = [d for d in rule.destinations.all() if d.kind in ("email", "webhook")]
        if len(destinations) != 1 or [d.kind for d in destinations] != rule.channels:
            continue
        destination = destinations[0]
        sub = subscription_model.objects.using(db).create(
            user_id=rule.owner_id,
            exchange=rule.exchange,
            symbol=rule.symbol,
            min_notional=Decimal(str(rule.params.get("min_notional") or "0")),
            channel=destination.kind,
            target=destination.target,
            format=destination.format if destination.kind == "webhook" else "slack",
            active=rule.active,
            created_at=rule.created_at,
        )
        alerts = list(alert_model.objects.using(db).filter(rule=rule, trade_id__isnull=False).order_by("pk"))
        keys = {f"alert:{a.pk}:{destination.pk}": a for a in alerts}
        outbox = {d.key: d for d in outbox_model.objects.using(db).filter(key__in=list(keys))}
        whales = {
            (w.exchange, w.symbol, w.trade_id): w.pk
            for w in whale_model.objects.using(db).filter(trade_id__in=[a.trade_id for a in alerts])
        }
        rows = []
        for key, alert in keys.items():
            whale_id = whales.get((alert.exchange, alert.symbol, alert.trade_id))
            sent = outbox.get(key)
            if whale_id is None or sent is None:
                continue  # the whale record is gone (deleted), or no delivery was made: nothing to restore
            rows.append(
                delivery_model(
                    alert_id=whale_id,
                    subscription=sub,
                    status=FROM_OUTBOX[sent.status],
                    attempts=sent.attempts,
                    last_error=sent.last_error,
                    sent_at=sent.sent_at,
                    created_at=sent.created_at,
                )
            )
        delivery_model.objects.using(db).bulk_create(rows, ignore_conflicts=True)
        outbox_model.objects.using(db).filter(key__in=list(keys)).delete()
        done.append(rule.pk)
    rule_model.objects.using(db).filter(pk__in=done).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_initial"),
        ("alerts", "0001_initial"),
        ("notifications", "0001_initial"),
        ("analytics", "0003_whale_symbol_time"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
