"""The outbox sender on the real PostgreSQL against real local receivers: the attempt is committed before the send,
failures count and back off, permanent errors and the last attempt are dead (and shown to the owner), expired leases
are reclaimed, and each target's circuit breaker defers (never attempts, never counts) while open."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from notifications import sender
from notifications.models import ChannelKind, CircuitBreaker, Delivery, DeliveryStatus, Notification
from tests.conftest import wait_for
from tests.notifications.factories import deliveries, destination, user
from tests.notifications.receivers import Received, Receiver, free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.behaviour.release.set()
    server.stop()


@pytest.fixture(autouse=True)
def sender_settings(settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = True
    settings.NOTIFY_ATTEMPT_DEADLINE_SECONDS = 1.5
    settings.NOTIFY_MAX_ATTEMPTS = 3
    settings.NOTIFY_BREAKER_FAILURES = 100  # the breaker tests lower it
    settings.NOTIFY_BACKOFF_BASE_SECONDS = 60.0  # nothing is due again within a test unless made so


def hook(url: str, count: int = 1, name: str = "dana") -> list[Delivery]:
    owner = user(name)
    return deliveries(owner, destination(owner, ChannelKind.WEBHOOK, url), count)


def row(delivery: Delivery) -> Delivery:
    return Delivery.objects.get(pk=delivery.pk)


def make_due(*rows: Delivery) -> None:
    Delivery.objects.filter(pk__in=[r.pk for r in rows]).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_the_attempt_is_committed_before_the_send(receiver: Receiver) -> None:
    [delivery] = hook(receiver.url())
    seen: list[tuple[str, int]] = []

    def look(_got: Received) -> None:
        # Another connection (the receiver's thread), while the request is in flight: the claim is visible.
        try:
            current = Delivery.objects.get(pk=delivery.pk)
            seen.append((current.status, current.attempts))
        finally:
            connection.close()

    receiver.on_request = look
    assert sender.run(seconds=30) == {"sent": 1, "deferred": 0, "dead": 0}
    assert seen == [(DeliveryStatus.SENDING, 1)]
    current = row(delivery)
    assert (current.status, current.attempts, current.last_error) == (DeliveryStatus.SENT, 1, "")
    assert receiver.keys() == [delivery.key]


def test_a_slow_loris_attempt_ends_at_its_deadline_counts_and_is_retried(receiver: Receiver) -> None:
    # The review finding: the attempt ends at the deadline (the receiver still had most of its answer to trickle),
    # it counts (attempts 1, committed) and the delivery waits for its retry instead of holding the sender.
    receiver.behaviour.plan, receiver.behaviour.interval = ["slow"], 0.5
    [delivery] = hook(receiver.url())
    assert sender.run(seconds=30)["pending"] == 1
    current = row(delivery)
    assert (current.status, current.attempts) == (DeliveryStatus.PENDING, 1)
    assert "timed out" in current.last_error
    assert current.next_attempt_at > timezone.now()
    answer = wait_for(lambda: receiver.slow_answers, timeout=60)[0]
    assert answer["hung_up"]
    assert int(answer["written"]) < int(answer["of"])
    make_due(delivery)
    assert sender.run(seconds=30)["sent"] == 1
    assert (row(delivery).status, row(delivery).attempts) == (DeliveryStatus.SENT, 2)


def test_failures_back_off_then_the_delivery_dies_and_its_owner_is_told(receiver: Receiver) -> None:
    receiver.behaviour.status = 503
    [delivery] = hook(receiver.url())
    waits = []
    for attempt in (1, 2):
        before = timezone.now()
        assert sender.run(seconds=30)["pending"] == 1
        current = row(delivery)
        assert (current.status, current.attempts) == (DeliveryStatus.PENDING, attempt)
        waits.append((current.next_attempt_at - before).total_seconds())
        assert sender.run(seconds=30).get("pending", 0) == 0  # not due yet: nothing attempted
        make_due(delivery)
    # Equal jitter: attempt n waits between half and all of base x 2^(n-1).
    assert 30 <= waits[0] <= 61
    assert 60 <= waits[1] <= 121
    assert sender.run(seconds=30)["dead"] == 1
    current = row(delivery)
    assert (current.status, current.attempts) == (DeliveryStatus.DEAD, 3)
    assert current.last_error == f"failed: 127.0.0.1:{receiver.port} answered HTTP 503"
    [note] = Notification.objects.filter(owner=current.destination.owner)
    assert note.key == f"dead:{delivery.key}"
    assert current.last_error in note.body
    assert len(receiver.keys()) == 3


def test_a_permanent_error_is_dead_at_once(receiver: Receiver) -> None:
    receiver.behaviour.status = 410
    [delivery] = hook(receiver.url())
    assert sender.run(seconds=30)["dead"] == 1
    assert (row(delivery).status, row(delivery).attempts) == (DeliveryStatus.DEAD, 1)


def test_an_expired_lease_is_claimed_again_and_an_exhausted_one_is_dead(receiver: Receiver) -> None:
    first, second = hook(receiver.url(), 2)
    claimed = sender.claim()  # a sender claims both, then dies before sending anything
    assert sorted(d.pk for d in claimed.rows) == [first.pk, second.pk]
    assert sender.claim().rows == []  # leased: nobody else takes them
    Delivery.objects.filter(pk=second.pk).update(attempts=3)  # its lease expired on the last attempt
    Delivery.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    totals = sender.run(seconds=30)
    assert (totals["sent"], totals["dead"]) == (1, 1)
    assert (row(first).status, row(first).attempts) == (DeliveryStatus.SENT, 2)
    assert (row(second).status, row(second).last_error) == (
        DeliveryStatus.DEAD,
        "failed: the last attempt was interrupted",
    )
    assert receiver.keys() == [first.key]


def test_the_breaker_opens_defers_without_counting_and_a_probe_closes_it(receiver: Receiver, settings: Any) -> None:
    settings.NOTIFY_BREAKER_FAILURES = 2
    settings.NOTIFY_BATCH_SIZE = 2
    down = f"http://127.0.0.1:{free_port()}/hook"
    failing = hook(down, 2, "erin")
    assert sender.run(seconds=30)["pending"] == 2  # two transient failures in a row: open
    breaker = CircuitBreaker.objects.get(target=f"webhook:127.0.0.1:{down.split(':')[2].split('/')[0]}")
    assert breaker.failures == 2
    assert breaker.open_until is not None
    assert breaker.open_until > timezone.now()
    later = hook(down, 3, "fay")
    make_due(*failing)
    other = hook(receiver.url(), 1, "gus")  # another host is not held by this breaker
    totals = sender.run(seconds=30)
    assert totals["sent"] == 1
    assert totals["deferred"] == 5
    for delivery in [*failing, *later]:
        current = row(delivery)
        assert current.status == DeliveryStatus.PENDING
        assert current.next_attempt_at == breaker.open_until
    assert [row(d).attempts for d in [*failing, *later]] == [1, 1, 0, 0, 0]  # deferred: not counted
    assert row(other[0]).status == DeliveryStatus.SENT
    # The cool-down passes with the host back (same port, now listening): one probe, then the rest.
    port = int(down.split(":")[2].split("/")[0])
    back = Receiver(port)
    try:
        CircuitBreaker.objects.filter(pk=breaker.pk).update(open_until=timezone.now() - timedelta(seconds=1))
        make_due(*failing, *later)
        settings.NOTIFY_BATCH_SIZE = 10
        first = sender.claim()
        assert len(first.rows) == 1
        assert first.deferred == 4
        assert sender.send_batch(first.rows, _pool()) == {"sent": 1}
        assert CircuitBreaker.objects.get(pk=breaker.pk).open_until is None
        make_due(*failing, *later)
        assert sender.run(seconds=30)["sent"] == 4
        assert sorted(back.keys()) == sorted(d.key for d in [*failing, *later])
    finally:
        back.stop()


def _pool() -> Any:
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(2)


def test_a_destination_turned_off_after_the_firing_is_not_sent(receiver: Receiver) -> None:
    [delivery] = hook(receiver.url())
    delivery.destination.active = False
    delivery.destination.save(update_fields=["active"])
    assert sender.run(seconds=30)["dead"] == 1
    current = row(delivery)
    assert (current.status, current.attempts) == (DeliveryStatus.DEAD, 0)
    assert current.last_error == "not sent: the destination was turned off"
    assert receiver.keys() == []


def test_a_channel_that_raises_unexpectedly_costs_one_attempt_and_strands_nothing(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifications.channels import webhook

    broken, fine = hook(receiver.url(), 1, "olaf")[0], hook(receiver.url(), 1, "pia")[0]
    real_send = webhook.send

    def send(delivery: Delivery, deadline: Any) -> None:
        if delivery.pk == broken.pk:
            raise KeyError("a bug")
        real_send(delivery, deadline)

    monkeypatch.setattr(webhook, "send", send)
    assert sender.run(seconds=30) == {"sent": 1, "pending": 1, "deferred": 0, "dead": 0}
    assert (row(broken).status, row(broken).attempts, row(broken).last_error) == (
        DeliveryStatus.PENDING,
        1,
        "failed: internal error",
    )
    assert row(fine).status == DeliveryStatus.SENT


def test_a_half_open_probe_answered_with_a_permanent_error_closes_the_breaker(receiver: Receiver) -> None:
    # The host answered (404 for this URL): it is up, so its other deliveries need not wait for another probe.
    receiver.behaviour.status = 404
    deliveries_to_host = hook(receiver.url(), 2)
    target = f"webhook:127.0.0.1:{receiver.port}"
    CircuitBreaker.objects.create(target=target, failures=5, open_until=timezone.now() - timedelta(seconds=1))
    first = sender.claim()
    assert [d.pk for d in first.rows] == [deliveries_to_host[0].pk]  # the probe
    assert first.deferred == 1
    assert sender.send_batch(first.rows, _pool()) == {"dead": 1}
    breaker = CircuitBreaker.objects.get(target=target)
    assert (breaker.failures, breaker.open_until, breaker.probe_until) == (0, None, None)


def test_in_app_deliveries_are_sent_as_a_batch_each_listed_once(settings: Any) -> None:
    """A claimed batch of in-app deliveries: their notifications stored in one statement and recorded sent in one,
    a key already listed (an attempt before a crash) not listed twice, and a toast pushed for each new one."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.test.utils import CaptureQueriesContext

    from notifications.channels import in_app
    from notifications.groups import user_group

    owner = user("quinn")
    rows = deliveries(owner, destination(owner, ChannelKind.IN_APP), 40)
    settings.NOTIFY_BATCH_SIZE = 40
    # The first delivery's notification was written by an attempt whose sender died before recording it.
    in_app.notify(owner.pk, rows[0].key, rows[0].subject, rows[0].body)
    layer = get_channel_layer()
    assert layer is not None
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(owner.pk), channel)
    with CaptureQueriesContext(connection) as queries:
        assert sender.run(seconds=30) == {"sent": 40, "deferred": 0, "dead": 0}
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1, inserts  # one statement for the batch, not one per delivery
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 40
    assert sorted(Notification.objects.values_list("key", flat=True)) == sorted(r.key for r in rows)

    async def receive(count: int) -> list[str]:
        # In one event loop: channels-redis keeps what it read ahead per loop (a receive per async_to_sync call
        # would see the first message again and again).
        return [(await layer.receive(channel))["payload"]["toast"]["key"] for _ in range(count)]

    toasts = async_to_sync(receive)(39)
    assert toasts == [r.key for r in rows[1:]]  # the new ones, in order; none for the one already listed


def test_a_failing_in_app_batch_is_tried_one_by_one(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """When the batched write raises, each row is attempted on its own: every delivery still goes out once."""
    from notifications.channels import in_app

    def broken(rows: Any, deadline: Any) -> None:
        raise RuntimeError("a bug in the batch")

    monkeypatch.setattr(in_app, "send_many", broken)
    owner = user("rosa")
    rows = deliveries(owner, destination(owner, ChannelKind.IN_APP), 5)
    assert sender.run(seconds=30) == {"sent": 5, "deferred": 0, "dead": 0}
    assert sorted(Notification.objects.values_list("key", flat=True)) == sorted(r.key for r in rows)
