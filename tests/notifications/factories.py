"""Destinations and deliveries for the delivery tests, made through the outbox's own enqueue()."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from notifications.models import Delivery, Destination
from notifications.outbox import Message, Outgoing, enqueue


def user(name: str = "dana") -> Any:
    """A user."""
    return get_user_model().objects.create_user(name, password=f"pw-{name}-12345")


def destination(owner: Any, kind: str, target: str = "", **kwargs: Any) -> Destination:
    """An active destination."""
    return Destination.objects.create(owner=owner, kind=kind, target=target, **kwargs)


def deliveries(owner: Any, target: Destination, count: int = 1, prefix: str = "alert") -> list[Delivery]:
    """``count`` deliveries to ``target`` enqueued in one transaction (as a firing does), oldest first."""
    with transaction.atomic():
        enqueue(
            Outgoing(
                owner_id=owner.pk,
                channels=[target.kind],
                message=Message(f"{prefix}:{i}", f"BTCUSDT crossed 6000{i}", f"price 6000{i} on binance", {"n": i}),
                destination_ids=[target.pk],
            )
            for i in range(count)
        )
    return list(Delivery.objects.filter(destination=target).order_by("pk"))
