"""Whale-alert delivery end to end: a REAL Celery worker (queue ``alerts``) posts to a local HTTP receiver.

The receiver fails the first request with HTTP 500: the task retries with backoff and the alert still arrives
exactly once per (alert, subscription); duplicate task runs send nothing more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from cryptoproject.celery import app
from dashboard.health import queue_depths
from dashboard.models import AlertDelivery, AlertSubscription, DeliveryStatus, WebhookFormat
from dashboard.tasks import deliver_alert, deliver_new_alerts
from tests.conftest import ChildProcess, wait_for
from tests.dashboard.api_factories import Receiver, make_whale

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def private_targets_allowed(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """The worker (a child process) and this process both allow the local receiver."""
    monkeypatch.setenv("ALERT_WEBHOOK_ALLOW_PRIVATE", "true")
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture
def alert_worker(private_targets_allowed: None, celery_worker_process: ChildProcess) -> ChildProcess:
    """A real worker started after the environment allows private webhook targets."""
    return celery_worker_process


@pytest.fixture
def flaky_receiver() -> Iterator[Receiver]:
    r = Receiver(statuses=[500])
    yield r
    r.close()


def _idle() -> bool:
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        if any(queue_depths(client).values()):
            return False
    finally:
        client.close()
    inspect = app.control.inspect(timeout=1.0)
    busy: list[dict[str, Any]] = [inspect.active() or {}, inspect.reserved() or {}, inspect.scheduled() or {}]
    return not any(tasks for per_worker in busy for tasks in per_worker.values())


@pytest.mark.django_db(transaction=True)
def test_one_delivery_per_alert_and_subscription_after_a_retried_failure(
    alert_worker: ChildProcess, flaky_receiver: Receiver
) -> None:
    user = get_user_model().objects.create_user("dave", password="pw-dave-123")
    slack = AlertSubscription.objects.create(user=user, target=flaky_receiver.url("/slack"))
    discord = AlertSubscription.objects.create(
        user=user, target=flaky_receiver.url("/discord"), format=WebhookFormat.DISCORD, symbol="BTCUSDT"
    )
    AlertSubscription.objects.create(user=user, target=flaky_receiver.url("/eth"), symbol="ETHUSDT")
    alerts = [make_whale(1, notional="150000"), make_whale(2, notional="450000")]
    ids = [a.pk for a in alerts]

    deliver_new_alerts.delay(ids)
    wait_for(
        lambda: AlertDelivery.objects.filter(status=DeliveryStatus.SENT).count() == 4,
        timeout=90,
        what=f"four deliveries sent\n{alert_worker.output()[-3000:]}",
    )

    # Replays: the fan-out again, and duplicate single deliveries. None of them may send anything.
    deliver_new_alerts.delay(ids)
    for alert in alerts:
        deliver_alert.delay(alert.pk, slack.pk)
        deliver_alert.delay(alert.pk, discord.pk)
    wait_for(_idle, timeout=60, interval=0.5, what="the alerts queue to drain")

    accepted = flaky_receiver.accepted()
    per_pair = Counter(r["delivery"] for r in accepted)
    expected = {f"{a}:{s}" for a in ids for s in (slack.pk, discord.pk)}
    assert set(per_pair) == expected
    assert all(n == 1 for n in per_pair.values()), per_pair
    assert len(flaky_receiver.requests) == 5  # four successes and the one HTTP 500
    assert [r["status"] for r in flaky_receiver.requests].count(500) == 1
    assert {r["path"] for r in accepted} == {"/slack", "/discord"}
    assert all("text" in r["body"] for r in accepted if r["path"] == "/slack")
    assert all("content" in r["body"] for r in accepted if r["path"] == "/discord")

    rows = list(AlertDelivery.objects.order_by("id"))
    assert len(rows) == 4  # nothing for the ETHUSDT subscription
    assert all(r.status == DeliveryStatus.SENT and r.sent_at is not None for r in rows)
    assert sorted(r.attempts for r in rows) == [1, 1, 1, 2]
    retried = next(r for r in rows if r.attempts == 2)
    assert retried.last_error == ""
    assert "retrying" in alert_worker.output()
