"""``make bench-notify``'s rounds on the real PostgreSQL and Redis: both sides send every delivery once."""

from __future__ import annotations

import pytest

from benchmarks import notify
from notifications.models import Delivery, DeliveryStatus, Notification

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("side", notify.SIDES)
def test_each_side_sends_every_delivery_once(side: str) -> None:
    assert notify._round(side, 50, 1) > 0
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 50
    assert Notification.objects.count() == 50
