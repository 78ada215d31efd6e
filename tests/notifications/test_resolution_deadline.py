"""The host name's DNS lookup counts inside the attempt's total deadline, for webhooks (the SSRF guard resolves the
name), SMS (Twilio's API host), Telegram (the Bot API's host) and e-mail (the SMTP server).

A name whose lookup stalls (a DNS server that does not answer) is made through the project's own resolver hook
(``notifications.resolver.LOOKUP``): its lookup blocks until the test releases it, then answers 127.0.0.1, where
the real receivers and stand-ins listen. Before, the lookup ran outside the deadline (``socket.getaddrinfo`` has no
timeout) and held the attempt as long as the resolver did.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from notifications import resolver, sender
from notifications.channels import email, sms, telegram, webhook
from notifications.channels.base import Deadline, TransientError
from notifications.models import ChannelKind, Delivery, DeliveryStatus
from simulator.standins import telegram as telegram_standin
from simulator.standins import twilio as twilio_standin
from simulator.standins.base import Store
from tests.notifications.factories import deliveries, destination, user
from tests.notifications.receivers import Receiver, free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

STALLED = "stalled-dns.test"  # .test: reserved (RFC 2606), never a real name
SID, TOKEN, FROM = "AC0123456789abcdef0123456789abcdef", "twilio-secret-token", "+15005550006"
BOT_TOKEN = "123456:telegram-secret"


@dataclass
class Stall:
    """The stalled name's lookups: how many began, and the switch that lets them answer."""

    began: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def stall(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[Stall]:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = True  # the stalled name answers 127.0.0.1 once released
    state = Stall()
    system = resolver.LOOKUP

    def lookup(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host != STALLED:
            return system(host, port, *args, **kwargs)
        with state.lock:
            state.began += 1
        state.release.wait(120)  # a DNS server that does not answer (bounded only so a failing test ends)
        return system("127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(resolver, "LOOKUP", lookup)
    yield state
    state.release.set()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.behaviour.release.set()
    server.stop()


def one(kind: str, target: str) -> Delivery:
    owner = user()
    return deliveries(owner, destination(owner, kind, target))[0]


def stalled_then_released(stall: Stall, send: Callable[[Deadline], None], received: Callable[[], int]) -> None:
    """The attempt under a stalled lookup ends at its deadline (transient, counted as timed out) while the lookup
    is still stalled, nothing is sent; once the name answers, the next attempt is delivered."""
    with pytest.raises(TransientError) as caught:
        send(Deadline.after(1.0))
    assert "timed out" in caught.value.public
    assert stall.began == 1
    assert not stall.release.is_set()  # the attempt ended; the lookup had still not answered
    assert received() == 0
    stall.release.set()
    send(Deadline.after(5))
    assert received() == 1


def test_a_webhook_whose_name_does_not_resolve_in_time_ends_at_the_deadline(stall: Stall, receiver: Receiver) -> None:
    delivery = one(ChannelKind.WEBHOOK, f"http://{STALLED}:{receiver.port}/hook")
    stalled_then_released(stall, lambda deadline: webhook.send(delivery, deadline), lambda: len(receiver.received))
    assert receiver.received[0].headers["Host"] == f"{STALLED}:{receiver.port}"


def test_an_sms_whose_api_name_does_not_resolve_in_time_ends_at_the_deadline(stall: Stall, settings: Any) -> None:
    server = twilio_standin.start("127.0.0.1", 0, Store(), SID, TOKEN, FROM)
    try:
        settings.TWILIO_API_URL = f"http://{STALLED}:{server.server_address[1]}"
        settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM = SID, TOKEN, FROM
        delivery = one(ChannelKind.SMS, "+14155550100")
        stalled_then_released(stall, lambda deadline: sms.send(delivery, deadline), lambda: len(server.store.all()))
    finally:
        server.shutdown()
        server.server_close()


def test_a_telegram_message_whose_api_name_does_not_resolve_in_time_ends_at_the_deadline(
    stall: Stall, settings: Any
) -> None:
    server = telegram_standin.start("127.0.0.1", 0, Store(), BOT_TOKEN)
    try:
        settings.TELEGRAM_API_URL = f"http://{STALLED}:{server.server_address[1]}"
        settings.TELEGRAM_BOT_TOKEN = BOT_TOKEN
        delivery = one(ChannelKind.TELEGRAM, "424242")
        stalled_then_released(
            stall, lambda deadline: telegram.send(delivery, deadline), lambda: len(server.store.all())
        )
    finally:
        server.shutdown()
        server.server_close()


def test_an_email_whose_mail_server_name_does_not_resolve_in_time_ends_at_the_deadline(
    stall: Stall, settings: Any
) -> None:
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = STALLED, port
        delivery = one(ChannelKind.EMAIL, "dana@example.com")
        stalled_then_released(stall, lambda deadline: email.send(delivery, deadline), lambda: len(received))
        assert received[0].rcpt_tos == ["dana@example.com"]
    finally:
        controller.stop()


def test_the_sender_counts_a_stalled_lookup_as_a_timed_out_attempt_and_retries_it(
    stall: Stall, receiver: Receiver, settings: Any
) -> None:
    settings.NOTIFY_ATTEMPT_DEADLINE_SECONDS = 1.0
    # Not due again within the first run: with a backoff of a fraction of a second, a loaded machine's run reached
    # its next claim after the backoff had passed and attempted the row twice (found failing under load).
    settings.NOTIFY_BACKOFF_BASE_SECONDS = 60.0
    settings.NOTIFY_BREAKER_FAILURES = 100
    delivery = one(ChannelKind.WEBHOOK, f"http://{STALLED}:{receiver.port}/hook")
    assert sender.run(seconds=30)["pending"] == 1
    assert not stall.release.is_set()  # the run ended with the lookup still stalled
    current = Delivery.objects.get(pk=delivery.pk)
    assert (current.status, current.attempts) == (DeliveryStatus.PENDING, 1)
    assert "timed out" in current.last_error
    stall.release.set()
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=current.created_at)
    assert sender.run(seconds=30)["sent"] == 1
    assert (Delivery.objects.get(pk=delivery.pk).attempts, receiver.keys()) == (2, [delivery.key])
