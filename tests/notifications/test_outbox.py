"""enqueue(): one delivery per chosen destination, in-app created on first use, a replay adds nothing, and the
number of statements does not grow with the number of messages or owners (a firing batch of 10,000 rules)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import ChannelKind, Delivery, Destination
from notifications.outbox import Message, Outgoing, enqueue
from tests.notifications.factories import destination, user

pytestmark = pytest.mark.django_db


def message(n: int) -> Message:
    return Message(f"alert:{n}", f"subject {n}", f"body {n}")


def test_each_message_goes_to_the_owners_active_destinations_on_its_channels() -> None:
    ann, ben = user("ann"), user("ben")
    mail = destination(ann, ChannelKind.EMAIL, "ann@example.com")
    destination(ann, ChannelKind.EMAIL, "old@example.com", active=False)
    sms = destination(ann, ChannelKind.SMS, "+14155550100")
    hook = destination(ben, ChannelKind.WEBHOOK, "https://93.184.216.34/hook")

    new = enqueue(
        [
            Outgoing(ann.pk, ["email", "in_app"], message(1)),
            Outgoing(ann.pk, ["sms", "email"], message(2), destination_ids=[sms.pk]),  # only the chosen one
            Outgoing(ben.pk, ["webhook", "sms"], message(3)),  # ben has no SMS destination
        ]
    )

    in_app = Destination.objects.get(owner=ann, kind=ChannelKind.IN_APP)
    assert set(Delivery.objects.values_list("key", "destination_id", "kind")) == {
        (f"alert:1:{mail.pk}", mail.pk, "email"),
        (f"alert:1:{in_app.pk}", in_app.pk, "in_app"),
        (f"alert:2:{sms.pk}", sms.pk, "sms"),
        (f"alert:3:{hook.pk}", hook.pk, "webhook"),
    }
    assert new == 4
    assert not Destination.objects.filter(owner=ben, kind=ChannelKind.IN_APP).exists()
    # The same messages again (a replayed batch): nothing new.
    assert enqueue([Outgoing(ann.pk, ["email", "in_app"], message(1))]) == 0
    assert Delivery.objects.count() == 4


def test_an_owner_who_turned_in_app_off_gets_no_in_app_delivery() -> None:
    ann = user("ann")
    destination(ann, ChannelKind.IN_APP, "", active=False)
    assert enqueue([Outgoing(ann.pk, ["in_app"], message(1))]) == 0
    assert Destination.objects.filter(owner=ann).count() == 1


def test_statements_do_not_grow_with_messages_or_owners() -> None:
    def statements(owners: int, first: int) -> int:
        people = [user(f"u{first + i}") for i in range(owners)]
        for person in people:
            destination(person, ChannelKind.EMAIL, f"{person.username}@example.com")
        batch = [Outgoing(p.pk, ["email", "in_app"], message(first + i)) for i, p in enumerate(people)]
        with CaptureQueriesContext(connection) as queries:
            assert enqueue(batch) == 2 * owners
        return len(queries)

    assert statements(3, 0) == statements(40, 100)
