"""Delivery retention: sent and dead rows older than NOTIFICATIONS_DELIVERY_RETENTION_DAYS are deleted in bounded
batches by a beat task; pending and sending rows, newer rows and the alerts themselves are kept."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from alerts.models import Alert, AlertRule
from cryptoproject.celery import app
from notifications import retention, tasks
from notifications.models import ChannelKind, Delivery, DeliveryStatus
from tests.notifications.factories import deliveries, destination, user

pytestmark = pytest.mark.django_db


def outbox(days_old: int, statuses: Sequence[str], prefix: str) -> list[int]:
    """Deliveries created ``days_old`` days ago, one per status; their ids."""
    owner = user(prefix)
    rows = deliveries(owner, destination(owner, ChannelKind.IN_APP), count=len(statuses), prefix=prefix)
    for row, status in zip(rows, statuses, strict=True):
        Delivery.objects.filter(pk=row.pk).update(
            status=status, created_at=timezone.now() - timedelta(days=days_old, minutes=1)
        )
    return [row.pk for row in rows]


@override_settings(NOTIFICATIONS_DELIVERY_RETENTION_DAYS=30)
def test_finished_deliveries_older_than_the_retention_are_deleted_in_bounded_batches() -> None:
    every = [DeliveryStatus.SENT, DeliveryStatus.DEAD, DeliveryStatus.PENDING, DeliveryStatus.SENDING]
    old = outbox(31, [*every, DeliveryStatus.SENT, DeliveryStatus.DEAD], "old")
    young = outbox(29, every, "young")
    # An alert older than the retention: alerts are kept, only their deliveries go.
    rule = AlertRule.objects.create(owner=user("ruth"), kind="whale", exchange="", symbol="", channels=["in_app"])
    alert = Alert.objects.create(
        rule=rule,
        kind="whale",
        exchange="binance",
        symbol="BTCUSDT",
        trigger="trade:1",
        traded_at=timezone.now() - timedelta(days=90),
        message="whale",
    )
    Alert.objects.filter(pk=alert.pk).update(fired_at=timezone.now() - timedelta(days=90))

    # One batch of two: two of the four expired finished rows go, the statement is bounded.
    assert retention.purge_deliveries(batch_size=2, max_batches=1) == 2
    assert Delivery.objects.filter(pk__in=old).count() == len(old) - 2
    # The task runs batches until none is left.
    with override_settings(RETENTION_BATCH_SIZE=1):
        assert tasks.purge_deliveries() == {"deleted": 2}
    kept = Delivery.objects.values_list("pk", "status")
    assert {pk for pk, _ in kept} == {old[2], old[3], *young}
    assert {status for pk, status in kept if pk in old} == {DeliveryStatus.PENDING, DeliveryStatus.SENDING}
    assert Alert.objects.filter(pk=alert.pk).exists()
    assert tasks.purge_deliveries() == {"deleted": 0}


def test_the_retention_runs_on_beat() -> None:
    entry = app.conf.beat_schedule["notifications-purge-deliveries"]
    assert entry["task"] == tasks.PURGE_DELIVERIES == tasks.purge_deliveries.name
    assert app.conf.task_routes["notifications.tasks.*"]["queue"] == "notify"


@override_settings(NOTIFICATIONS_DELIVERY_RETENTION_DAYS=7)
def test_the_retention_follows_the_setting() -> None:
    ids = outbox(8, [DeliveryStatus.SENT], "week")
    assert retention.purge_deliveries() == 1
    assert not Delivery.objects.filter(pk__in=ids).exists()
