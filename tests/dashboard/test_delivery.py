"""Whale-alert delivery logic on the real PostgreSQL with a local HTTP receiver: SSRF guard, formats, matching,
exactly-once claims, retries and e-mail through Django's locmem backend."""

from __future__ import annotations

import socket
from decimal import Decimal
from typing import Any, cast

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import ValidationError

from dashboard import delivery
from dashboard.delivery import (
    Outcome,
    PermanentDeliveryError,
    TransientDeliveryError,
    attempt_delivery,
    fan_out,
)
from dashboard.models import AlertDelivery, AlertSubscription, Channel, DeliveryStatus, WebhookFormat
from dashboard.tasks import backoff_seconds, deliver_alert, deliver_new_alerts
from dashboard.webhook_targets import UnsafeTargetError, check_webhook_target
from tests.dashboard.api_factories import Receiver, make_whale, receiver

pytestmark = pytest.mark.django_db
__all__ = ["receiver"]


@pytest.fixture
def user() -> Any:
    return get_user_model().objects.create_user("carol", password="pw-carol-123")


@pytest.fixture
def allow_private(settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = True


def subscribe(user: Any, target: str, **kwargs: Any) -> AlertSubscription:
    return AlertSubscription.objects.create(user=user, target=target, **kwargs)


# --------------------------------------------------------------------------------------------- SSRF guard
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://240.0.0.1/hook",
        "http://224.0.0.1/hook",
    ],
)
def test_private_and_reserved_targets_refused(url: str, settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(UnsafeTargetError, match="ALERT_WEBHOOK_ALLOW_PRIVATE"):
        check_webhook_target(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("http:///nohost", "no host"),
        ("http://127.0.0.1:99999/x", "port"),
        ("http://no-such-host.invalid/x", "does not resolve"),
    ],
)
def test_malformed_targets_refused(url: str, message: str) -> None:
    with pytest.raises(UnsafeTargetError, match=message):
        check_webhook_target(url, allow_private=True)


def test_public_address_allowed_and_private_allowed_by_setting(settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = False
    assert check_webhook_target("https://93.184.216.34/hook") == ["93.184.216.34"]
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = True
    assert check_webhook_target("http://127.0.0.1:9/hook") == ["127.0.0.1"]


def test_model_clean_validates_targets(user: Any, settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = False
    sub = AlertSubscription(user=user, target="http://127.0.0.1/hook", channel=Channel.WEBHOOK)
    with pytest.raises(ValidationError) as info:
        sub.full_clean()
    assert "private" in str(info.value.message_dict["target"])
    with pytest.raises(ValidationError, match="valid http"):
        AlertSubscription(user=user, target="not a url", channel=Channel.WEBHOOK).full_clean()
    with pytest.raises(ValidationError, match="e-mail"):
        AlertSubscription(user=user, target="nobody", channel=Channel.EMAIL).full_clean()
    ok = AlertSubscription(
        user=user, target=" ops@example.com ", channel=Channel.EMAIL, exchange=" Binance ", symbol="btcusdt"
    )
    ok.full_clean()
    assert (ok.target, ok.exchange, ok.symbol) == ("ops@example.com", "binance", "BTCUSDT")
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = True
    AlertSubscription(user=user, target="http://127.0.0.1:9/hook", channel=Channel.WEBHOOK).full_clean()


def test_refused_again_at_send_time(user: Any, receiver: Receiver, settings: Any) -> None:
    # Saved while private targets were allowed; the setting was turned off since: nothing is sent.
    sub = subscribe(user, receiver.url())
    alert = make_whale(1)
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = False
    result = attempt_delivery(alert.pk, sub.pk)
    assert result.outcome is Outcome.FAILED
    assert "private" in result.error
    assert receiver.requests == []
    row = AlertDelivery.objects.get()
    assert row.status == DeliveryStatus.FAILED
    assert "private" in row.last_error


# --------------------------------------------------------------------------------------------- formats
def test_webhook_bodies(user: Any) -> None:
    alert = make_whale(7, notional="772970.5")
    slack = AlertSubscription(pk=3, user=user, target="x", format=WebhookFormat.SLACK)
    discord = AlertSubscription(pk=3, user=user, target="x", format=WebhookFormat.DISCORD)
    generic = AlertSubscription(pk=3, user=user, target="x", format=WebhookFormat.GENERIC)
    text = delivery.alert_text(alert)
    assert text.startswith("Whale BUY ")
    assert "BTCUSDT @ 62500 on binance = 772,970" in text
    assert "2024-08-09 00:00:00 UTC" in text
    assert delivery.webhook_body(alert, slack) == {"text": text}
    assert delivery.webhook_body(alert, discord) == {"content": text}
    body = cast(delivery.GenericBody, delivery.webhook_body(alert, generic))
    assert set(body) == {"id", "text", "alert"}
    assert body["id"] == f"{alert.pk}:3"
    assert body["alert"]["notional"] == "772970.5"
    assert body["alert"]["trade_id"] == 7
    assert body["alert"]["t"] == 1723161600000


# --------------------------------------------------------------------------------------------- matching
def test_fan_out_matches_scope_and_notional(user: Any) -> None:
    everything = subscribe(user, "a@example.com", channel=Channel.EMAIL)
    btc_only = subscribe(user, "b@example.com", channel=Channel.EMAIL, exchange="binance", symbol="btcusdt")
    big_only = subscribe(user, "c@example.com", channel=Channel.EMAIL, min_notional=Decimal("500000"))
    subscribe(user, "d@example.com", channel=Channel.EMAIL, exchange="coinbase")
    subscribe(user, "e@example.com", channel=Channel.EMAIL, active=False)
    small = make_whale(1, notional="150000")
    large = make_whale(2, notional="600000")
    pairs = fan_out([small.pk, large.pk, small.pk])
    assert sorted(pairs) == sorted(
        [
            (small.pk, everything.pk),
            (small.pk, btc_only.pk),
            (large.pk, everything.pk),
            (large.pk, btc_only.pk),
            (large.pk, big_only.pk),
        ]
    )
    assert AlertDelivery.objects.count() == 5
    assert btc_only.matches(small)
    assert not big_only.matches(small)
    # Idempotent: the rows exist already; a sent one is no longer handed out.
    AlertDelivery.objects.filter(alert=small, subscription=everything).update(status=DeliveryStatus.SENT)
    AlertDelivery.objects.filter(alert=large, subscription=big_only).update(status=DeliveryStatus.FAILED)
    assert sorted(fan_out([small.pk, large.pk])) == sorted(
        [(small.pk, btc_only.pk), (large.pk, everything.pk), (large.pk, btc_only.pk)]
    )
    assert AlertDelivery.objects.count() == 5
    assert fan_out([]) == []
    assert fan_out([999999]) == []


def test_fan_out_without_subscriptions(user: Any) -> None:
    assert fan_out([make_whale(1).pk]) == []
    assert AlertDelivery.objects.count() == 0


# --------------------------------------------------------------------------------------------- sending once
@pytest.mark.usefixtures("allow_private")
def test_webhook_sent_once_then_already_sent(user: Any, receiver: Receiver) -> None:
    sub = subscribe(user, receiver.url(), format=WebhookFormat.DISCORD)
    alert = make_whale(1)
    first = attempt_delivery(alert.pk, sub.pk)
    assert first.outcome is Outcome.SENT
    assert attempt_delivery(alert.pk, sub.pk).outcome is Outcome.ALREADY_SENT
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["body"]["content"].startswith("Whale BUY")
    assert request["delivery"] == f"{alert.pk}:{sub.pk}"
    assert request["content_type"] == "application/json"
    row = AlertDelivery.objects.get()
    assert (row.status, row.attempts, row.last_error) == (DeliveryStatus.SENT, 1, "")
    assert row.sent_at is not None


@pytest.mark.usefixtures("allow_private")
def test_server_error_retries_then_fails_finally(user: Any) -> None:
    receiver = Receiver(statuses=[500, 503, 502])
    try:
        sub = subscribe(user, receiver.url())
        alert = make_whale(1)
        retry = attempt_delivery(alert.pk, sub.pk)
        assert retry.outcome is Outcome.RETRY
        assert "HTTP 500" in retry.error
        row = AlertDelivery.objects.get()
        assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
        assert attempt_delivery(alert.pk, sub.pk).outcome is Outcome.RETRY
        final = attempt_delivery(alert.pk, sub.pk, final=True)
        assert final.outcome is Outcome.FAILED
        row.refresh_from_db()
        assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 3)
        # The operator's detail names the status; the subscriber's record says only that it failed (no
        # receiver detail leaks to a subscriber).
        assert "HTTP 502" in final.error
        assert row.last_error == "failed: the webhook did not accept the alert"
        # A later success still happens exactly once (e.g. an operator re-queues the delivery).
        assert attempt_delivery(alert.pk, sub.pk).outcome is Outcome.SENT
        assert attempt_delivery(alert.pk, sub.pk).outcome is Outcome.ALREADY_SENT
        assert len(receiver.accepted()) == 1
    finally:
        receiver.close()


@pytest.mark.usefixtures("allow_private")
@pytest.mark.parametrize("status", [404, 302])
def test_client_errors_and_redirects_are_permanent(user: Any, status: int) -> None:
    receiver = Receiver(statuses=[status])
    try:
        sub = subscribe(user, receiver.url())
        result = attempt_delivery(make_whale(1).pk, sub.pk)
        assert result.outcome is Outcome.FAILED
        assert f"HTTP {status}" in result.error
        assert len(receiver.requests) == 1  # the redirect was not followed
    finally:
        receiver.close()


def test_post_json_network_error_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientDeliveryError, match="cannot reach"):
        delivery.post_json(f"http://127.0.0.1:{port}/x", {"text": "t"}, "1:1", timeout=2)
    with pytest.raises(TransientDeliveryError):
        delivery.post_json(f"http://127.0.0.1:{port}/x", {"content": ""}, "1:1", timeout=2)
    assert issubclass(PermanentDeliveryError, RuntimeError)


def test_gone_and_inactive(user: Any, settings: Any) -> None:
    sub = subscribe(user, "ops@example.com", channel=Channel.EMAIL, active=False)
    alert = make_whale(1)
    assert attempt_delivery(alert.pk, 999999).outcome is Outcome.GONE
    assert attempt_delivery(999999, sub.pk).outcome is Outcome.GONE
    assert attempt_delivery(alert.pk, sub.pk).outcome is Outcome.GONE
    assert mail.outbox == []


def test_email_delivery_once_with_locmem_backend(user: Any, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    sub = subscribe(user, "ops@example.com", channel=Channel.EMAIL)
    alert = make_whale(1, notional="300000")
    assert deliver_alert.apply(args=(alert.pk, sub.pk)).get() == "sent"
    assert deliver_alert.apply(args=(alert.pk, sub.pk)).get() == "already_sent"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.com"]
    assert message.subject == "Whale alert: buy BTCUSDT on binance"
    assert "= 300,000" in message.body
    assert AlertDelivery.objects.get().status == DeliveryStatus.SENT


def test_email_server_down_is_transient(user: Any, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        settings.EMAIL_PORT = sock.getsockname()[1]
    settings.EMAIL_HOST = "127.0.0.1"
    sub = subscribe(user, "ops@example.com", channel=Channel.EMAIL)
    result = attempt_delivery(make_whale(1).pk, sub.pk)
    assert result.outcome is Outcome.RETRY
    assert "mail server" in result.error


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff_seconds(n) for n in range(4)] == [2, 4, 8, 16]
    assert backoff_seconds(20) == 300


# --------------------------------------------------------------------------------------------- tasks in process
@pytest.fixture
def eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the Celery tasks in this process (the broker path is covered by test_alerts_worker)."""
    from cryptoproject.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    # An eager retry runs the next attempt at once, then reports the first run as RETRY: keep that as a result.
    monkeypatch.setitem(app.conf, "task_eager_propagates", False)


@pytest.mark.usefixtures("allow_private", "eager")
def test_tasks_fan_out_and_retry_until_sent(user: Any) -> None:
    receiver = Receiver(statuses=[500])
    try:
        subscribe(user, receiver.url(), format=WebhookFormat.GENERIC)
        alerts = [make_whale(1), make_whale(2)]
        assert deliver_new_alerts.apply(args=([a.pk for a in alerts],)).get() == 2
        assert len(receiver.accepted()) == 2
        assert len(receiver.requests) == 3
        rows = AlertDelivery.objects.order_by("alert_id")
        assert [r.status for r in rows] == [DeliveryStatus.SENT, DeliveryStatus.SENT]
        assert [r.attempts for r in rows] == [2, 1]
        assert {r["body"]["alert"]["trade_id"] for r in receiver.accepted()} == {1, 2}
        # Nothing left to deliver on a replay.
        assert deliver_new_alerts.apply(args=([a.pk for a in alerts],)).get() == 0
        assert len(receiver.requests) == 3
    finally:
        receiver.close()


@pytest.mark.usefixtures("allow_private", "eager")
def test_task_gives_up_after_max_retries(user: Any) -> None:
    from dashboard.tasks import MAX_RETRIES

    receiver = Receiver(statuses=[500, 500])
    try:
        sub = subscribe(user, receiver.url())
        alert = make_whale(1)
        first = deliver_alert.apply(args=(alert.pk, sub.pk), retries=MAX_RETRIES - 1)
        assert first.get() == "failed"  # its retry ran at once (eager), as the last allowed attempt
        row = AlertDelivery.objects.get()
        assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 2)
        assert row.last_error == "failed: the webhook did not accept the alert"
        assert len(receiver.requests) == 2
    finally:
        receiver.close()


@pytest.mark.django_db(transaction=True)
def test_row_locked_by_another_worker_is_skipped() -> None:
    import threading

    from django.db import connections, transaction

    owner = get_user_model().objects.create_user("gina", password="pw-gina-123")
    sub = subscribe(owner, "ops@example.com", channel=Channel.EMAIL)
    alert = make_whale(1)
    AlertDelivery.objects.create(alert=alert, subscription=sub)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        try:
            with transaction.atomic():
                AlertDelivery.objects.select_for_update().get(alert=alert, subscription=sub)
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(30)
        assert attempt_delivery(alert.pk, sub.pk).outcome is Outcome.BUSY
    finally:
        release.set()
        holder.join(30)
    assert AlertDelivery.objects.get().attempts == 0


@pytest.mark.usefixtures("eager")
def test_large_fan_out_is_split_into_bounded_runs(
    user: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, django_assert_max_num_queries: Any
) -> None:
    from dashboard import tasks

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    subscribe(user, "ops@example.com", channel=Channel.EMAIL)
    alerts = [make_whale(i) for i in range(1, 6)]
    with django_assert_max_num_queries(4):
        assert len(fan_out([a.pk for a in alerts])) == 5  # one query per step, not per alert
    AlertDelivery.objects.all().delete()
    monkeypatch.setattr(tasks, "MAX_ALERTS_PER_FANOUT", 2)
    assert deliver_new_alerts.apply(args=([a.pk for a in alerts],)).get() == 2
    assert sorted(m.body for m in mail.outbox) == sorted(delivery.alert_text(a) for a in alerts)
    assert AlertDelivery.objects.filter(status=DeliveryStatus.SENT).count() == 5
