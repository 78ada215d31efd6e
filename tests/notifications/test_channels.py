"""Each channel against a real local receiver: webhooks (formats, signature, SSRF guard, error classes, the total
deadline against a slow-loris receiver), e-mail through a real SMTP server, SMS and Telegram through the stand-ins,
in-app over the real channel layer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from notifications.channels import email, in_app, sms, telegram, webhook
from notifications.channels.base import Deadline, PermanentError, TransientError
from notifications.groups import user_group
from notifications.models import ChannelKind, Notification, WebhookFormat
from simulator.standins import telegram as telegram_standin
from simulator.standins import twilio as twilio_standin
from simulator.standins.base import StandinServer, Store
from tests.notifications.factories import deliveries, destination, user
from tests.notifications.receivers import Receiver, free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

SID, TOKEN, FROM = "AC0123456789abcdef0123456789abcdef", "twilio-secret-token", "+15005550006"
BOT_TOKEN = "123456:telegram-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.behaviour.release.set()
    server.stop()


@pytest.fixture
def allow_private(settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = True


def one(kind: str, target: str = "", **kwargs: Any) -> Any:
    owner = user()
    return deliveries(owner, destination(owner, kind, target, **kwargs))[0]


def alert_like(delivery: Any) -> Any:
    """The delivery with an alert's texts: the body starts with the subject (alerts.wiring.describe)."""
    delivery.subject = "BTCUSDT crossed 61836.63 downward"
    delivery.body = "BTCUSDT crossed 61836.63 downward: 61836.01 on binance"
    delivery.save(update_fields=["subject", "body"])
    return delivery


# --------------------------------------------------------------------------------------------- webhooks
def test_generic_webhook_is_signed_and_carries_the_idempotency_key(receiver: Receiver, allow_private: None) -> None:
    delivery = one(ChannelKind.WEBHOOK, receiver.url(), format=WebhookFormat.GENERIC, secret="s3cret")
    webhook.send(delivery, Deadline.after(5))
    [got] = receiver.received
    assert got.key == delivery.key
    assert got.json() == {"id": delivery.key, "subject": delivery.subject, "text": delivery.body, "data": {"n": 0}}
    # What a receiver does (docs/ALERTS.md): recompute over "<timestamp>.<raw body>", compare, check age.
    stamp, header = got.headers["X-Timestamp"], got.headers["X-Signature"]
    assert webhook.verify("s3cret", stamp, got.body, header, now=time.time())
    assert not webhook.verify("other", stamp, got.body, header, now=time.time())
    assert not webhook.verify("s3cret", stamp, got.body + b" ", header, now=time.time())
    assert not webhook.verify("s3cret", stamp, got.body, header, now=float(stamp) + 301)  # a replay


@pytest.mark.parametrize(("fmt", "field"), [(WebhookFormat.SLACK, "text"), (WebhookFormat.DISCORD, "content")])
def test_slack_and_discord_bodies(receiver: Receiver, allow_private: None, fmt: str, field: str) -> None:
    delivery = one(ChannelKind.WEBHOOK, receiver.url(), format=fmt)
    webhook.send(delivery, Deadline.after(5))
    assert receiver.received[0].json() == {field: f"{delivery.subject}\n{delivery.body}"}


@pytest.mark.parametrize(("fmt", "field"), [(WebhookFormat.SLACK, "text"), (WebhookFormat.DISCORD, "content")])
def test_an_alert_chat_webhook_does_not_repeat_its_subject(
    receiver: Receiver, allow_private: None, fmt: str, field: str
) -> None:
    webhook.send(alert_like(one(ChannelKind.WEBHOOK, receiver.url(), format=fmt)), Deadline.after(5))
    assert receiver.received[0].json() == {field: "BTCUSDT crossed 61836.63 downward: 61836.01 on binance"}


def test_the_ssrf_guard_refuses_a_private_address(receiver: Receiver, settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = False
    delivery = one(ChannelKind.WEBHOOK, receiver.url())
    with pytest.raises(PermanentError, match="not a public address"):
        webhook.send(delivery, Deadline.after(5))
    assert receiver.received == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, TransientError),
        (503, TransientError),
        (429, TransientError),
        (404, PermanentError),
        (400, PermanentError),
        (301, PermanentError),
    ],
)
def test_answers_are_classified(receiver: Receiver, allow_private: None, status: int, error: type) -> None:
    receiver.behaviour.status = status
    with pytest.raises(error, match=f"HTTP {status} from 127.0.0.1"):
        webhook.send(one(ChannelKind.WEBHOOK, receiver.url()), Deadline.after(5))


def test_a_refused_connection_is_transient(allow_private: None) -> None:
    with pytest.raises(TransientError, match="cannot reach"):
        webhook.send(one(ChannelKind.WEBHOOK, f"http://127.0.0.1:{free_port()}/hook"), Deadline.after(5))


def test_a_slow_loris_receiver_cannot_hold_the_attempt_past_its_deadline(
    receiver: Receiver, allow_private: None
) -> None:
    # The review finding: the receiver answers one byte every 0.5 s. A socket timeout (5 s before) restarts with every
    # byte, so the old sender read until the receiver finished or Celery's soft limit. The deadline ends it: the
    # client hangs up while the receiver still has most of its answer to send.
    receiver.behaviour.mode, receiver.behaviour.interval = "slow", 0.5
    with pytest.raises(TransientError, match="deadline"):
        webhook.send(one(ChannelKind.WEBHOOK, receiver.url()), Deadline.after(1.5))
    answer = wait_slow_answer(receiver)
    assert answer["hung_up"]
    assert int(answer["written"]) < int(answer["of"])


def wait_slow_answer(receiver: Receiver) -> dict[str, int | bool]:
    from tests.conftest import wait_for

    wait_for(lambda: receiver.slow_answers, timeout=60, what="the slow answer to end")
    return receiver.slow_answers[0]


# --------------------------------------------------------------------------------------------- e-mail
class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp(settings: Any) -> Iterator[_Inbox]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    yield inbox
    controller.stop()


def test_email_reaches_a_real_smtp_server(smtp: _Inbox) -> None:
    delivery = one(ChannelKind.EMAIL, "dana@example.com")
    email.send(delivery, Deadline.after(5))
    [envelope] = smtp.messages
    assert envelope.rcpt_tos == ["dana@example.com"]
    message = message_from_bytes(envelope.content)
    assert message["Subject"] == delivery.subject
    assert message["X-Idempotency-Key"] == delivery.key
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert payload.decode().strip() == delivery.body


def test_a_trickling_smtp_server_cannot_hold_the_attempt_past_its_deadline(settings: Any) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    hung_up = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        try:
            for byte in b"220 slow.example ESMTP ready\r\n" * 4:
                conn.sendall(bytes([byte]))
                time.sleep(0.3)  # well inside the socket timeout: only the total deadline can end this
        except OSError:
            hung_up.set()
        finally:
            conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", listener.getsockname()[1]
    with pytest.raises(TransientError, match=r"deadline|timed out|unavailable"):
        email.send(one(ChannelKind.EMAIL, "dana@example.com"), Deadline.after(1.5))
    assert hung_up.wait(30), "the client never hung up on the trickling server"
    listener.close()


# --------------------------------------------------------------------------------------------- SMS (Twilio)
@pytest.fixture
def twilio_api(settings: Any) -> Iterator[StandinServer]:
    server = twilio_standin.start("127.0.0.1", 0, Store(), SID, TOKEN, FROM)
    settings.TWILIO_API_URL, settings.TWILIO_ACCOUNT_SID = server.url, SID
    settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM = TOKEN, FROM
    yield server
    server.shutdown()
    server.server_close()


def test_sms_reaches_the_twilio_stand_in(twilio_api: StandinServer) -> None:
    delivery = one(ChannelKind.SMS, "+14155550100")
    sms.send(delivery, Deadline.after(5))
    [message] = twilio_api.store.all()
    assert (message["to"], message["from"]) == ("+14155550100", FROM)
    assert message["body"] == f"{delivery.subject}\n{delivery.body}"


def test_an_alert_sms_does_not_repeat_its_subject(twilio_api: StandinServer) -> None:
    # Found by the browser test: every alert's body starts with its subject, and the SMS carried both (one segment
    # of 160 characters spent on the repeat).
    delivery = alert_like(one(ChannelKind.SMS, "+14155550100"))
    sms.send(delivery, Deadline.after(5))
    [message] = twilio_api.store.all()
    assert message["body"] == "BTCUSDT crossed 61836.63 downward: 61836.01 on binance"


def test_twilio_invalid_number_21211_is_permanent(twilio_api: StandinServer) -> None:
    with pytest.raises(PermanentError, match="21211") as caught:
        sms.send(one(ChannelKind.SMS, twilio_standin.INVALID_TO), Deadline.after(5))
    assert "invalid 'To'" in caught.value.public
    assert twilio_api.store.all() == []


def test_a_number_that_is_not_e164_is_refused_before_the_api(twilio_api: StandinServer) -> None:
    with pytest.raises(PermanentError, match=r"E\.164"):
        sms.send(one(ChannelKind.SMS, "0041 79 123"), Deadline.after(5))


@pytest.mark.parametrize(("fault", "error"), [(429, TransientError), (500, TransientError), (503, TransientError)])
def test_twilio_busy_and_down_are_transient(twilio_api: StandinServer, fault: int, error: type) -> None:
    twilio_api.faults.push([fault])
    with pytest.raises(error, match=f"HTTP {fault}"):
        sms.send(one(ChannelKind.SMS, "+14155550100"), Deadline.after(5))


def test_a_wrong_twilio_token_is_permanent_and_never_shown(twilio_api: StandinServer, settings: Any) -> None:
    settings.TWILIO_AUTH_TOKEN = "wrong-secret-token"
    with pytest.raises(PermanentError) as caught:
        sms.send(one(ChannelKind.SMS, "+14155550100"), Deadline.after(5))
    assert "HTTP 401" in str(caught.value)
    for text in (str(caught.value), caught.value.public):
        assert "wrong-secret-token" not in text
        assert TOKEN not in text


# --------------------------------------------------------------------------------------------- Telegram
@pytest.fixture
def telegram_api(settings: Any) -> Iterator[StandinServer]:
    server = telegram_standin.start("127.0.0.1", 0, Store(), BOT_TOKEN)
    settings.TELEGRAM_API_URL, settings.TELEGRAM_BOT_TOKEN = server.url, BOT_TOKEN
    yield server
    server.shutdown()
    server.server_close()


def test_telegram_reaches_the_bot_api_stand_in(telegram_api: StandinServer) -> None:
    delivery = one(ChannelKind.TELEGRAM, "424242")
    telegram.send(delivery, Deadline.after(5))
    [message] = telegram_api.store.all()
    assert (message["chat_id"], message["text"]) == ("424242", f"{delivery.subject}\n{delivery.body}")


def test_an_alert_telegram_message_does_not_repeat_its_subject(telegram_api: StandinServer) -> None:
    telegram.send(alert_like(one(ChannelKind.TELEGRAM, "424242")), Deadline.after(5))
    [message] = telegram_api.store.all()
    assert message["text"] == "BTCUSDT crossed 61836.63 downward: 61836.01 on binance"


def test_telegram_429_retry_after_is_honoured(telegram_api: StandinServer) -> None:
    telegram_api.faults.push([429])
    with pytest.raises(TransientError) as caught:
        telegram.send(one(ChannelKind.TELEGRAM, "424242"), Deadline.after(5))
    assert caught.value.retry_after == telegram_standin.RETRY_AFTER_SECONDS


@pytest.mark.parametrize(("chat", "words"), [("666", "blocked"), ("not a chat", "chat not found")])
def test_telegram_blocked_and_unknown_chats_are_permanent(telegram_api: StandinServer, chat: str, words: str) -> None:
    with pytest.raises(PermanentError) as caught:
        telegram.send(one(ChannelKind.TELEGRAM, chat), Deadline.after(5))
    assert words in caught.value.public


def test_a_wrong_bot_token_is_permanent_and_never_shown(telegram_api: StandinServer, settings: Any) -> None:
    settings.TELEGRAM_BOT_TOKEN = "999:wrong-bot-secret"
    with pytest.raises(PermanentError) as caught:
        telegram.send(one(ChannelKind.TELEGRAM, "424242"), Deadline.after(5))
    assert "HTTP 401" in str(caught.value)
    assert "wrong-bot-secret" not in str(caught.value) + caught.value.public


# --------------------------------------------------------------------------------------------- in-app
def test_in_app_stores_one_notification_and_pushes_a_toast() -> None:
    delivery = one(ChannelKind.IN_APP)
    layer = get_channel_layer()
    assert layer is not None
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(delivery.destination.owner_id), channel)
    in_app.send(delivery, Deadline.after(5))
    in_app.send(delivery, Deadline.after(5))  # a repeated attempt lists nothing twice
    event = async_to_sync(layer.receive)(channel)
    assert event["payload"]["toast"] == {
        "key": delivery.key,
        "subject": delivery.subject,
        "body": delivery.body,
        "data": delivery.payload,  # the alert's fields, for a page that lists alerts (My dashboard)
    }
    assert list(Notification.objects.values_list("key", flat=True)) == [delivery.key]


def test_the_documented_verification_accepts_our_signature(receiver: Receiver, allow_private: None) -> None:
    # The receiver's code in docs/ALERTS.md, run as written against a real request.
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "ALERTS.md").read_text()
    section = doc.split("Verifying a generic webhook", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "ALERTS.md", "exec"), namespace)
    delivery = one(ChannelKind.WEBHOOK, receiver.url(), format=WebhookFormat.GENERIC, secret="k3y")
    webhook.send(delivery, Deadline.after(5))
    [got] = receiver.received
    args = (got.headers["X-Timestamp"], got.body, got.headers["X-Signature"])
    assert namespace["verify"](b"k3y", *args)
    assert not namespace["verify"](b"other", *args)
