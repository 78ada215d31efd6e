"""Webhook secrets, the SSRF guard and stuck or lost deliveries, on the real PostgreSQL with a local HTTP
receiver."""

from __future__ import annotations

import ipaddress
import logging
import socket
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import OperationalError
from django.utils import timezone

from dashboard import delivery
from dashboard.delivery import (
    Outcome,
    attempt_delivery,
    stale_pending,
)
from dashboard.models import AlertDelivery, AlertSubscription, Channel, DeliveryStatus
from dashboard.tasks import deliver_alert, requeue_pending_deliveries
from dashboard.webhook_targets import UnsafeTargetError, check_webhook_target, is_public_address
from tests.dashboard.api_factories import Receiver, make_whale, receiver

pytestmark = pytest.mark.django_db
__all__ = ["receiver"]

FAILED_TEXT = "failed: the webhook did not accept the alert"


@pytest.fixture
def user() -> Any:
    return get_user_model().objects.create_user("dave", password="pw-dave-123")


@pytest.fixture
def allow_private(settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture
def strict(settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = False
    settings.ALERT_WEBHOOK_ALLOWED_PORTS = [80, 443]


# --------------------------------------------------------------------------------------------- finding 7: addresses
@pytest.mark.parametrize(
    "url",
    [
        "http://100.64.0.1/hook",  # shared address space (carrier-grade NAT)
        "http://100.100.100.200/latest/meta-data/",  # Alibaba Cloud metadata
        "http://[fec0::1]/hook",  # IPv6 site-local
        "http://[2002:a00:1::1]/hook",  # 6to4 around 10.0.0.1
        "http://[2002:5db8:d822::1]/hook",  # 6to4, even around a public IPv4 address
        "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/hook",  # Teredo
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 around 169.254.169.254
        "http://[::ffff:a9fe:a9fe]/hook",  # IPv4-mapped metadata address
        "http://[fd00:ec2::254]/hook",  # AWS IPv6 metadata
        "http://192.0.0.8/hook",  # IETF protocol assignments
        "http://198.18.0.1/hook",  # benchmarking
        "http://[ff02::1]/hook",  # IPv6 multicast
    ],
)
@pytest.mark.usefixtures("strict")
def test_non_global_addresses_refused(url: str) -> None:
    with pytest.raises(UnsafeTargetError, match="not a public address"):
        check_webhook_target(url)


@pytest.mark.usefixtures("strict")
def test_global_unicast_allowed_including_nat64_of_a_public_address() -> None:
    assert check_webhook_target("https://93.184.216.34/hook") == ["93.184.216.34"]
    assert check_webhook_target("https://[2606:4700::1111]/hook") == ["2606:4700::1111"]
    assert is_public_address(ipaddress.ip_address("64:ff9b::5db8:d822"))  # NAT64 of 93.184.216.34


# --------------------------------------------------------------------------------------------- finding 7: ports
@pytest.mark.usefixtures("strict")
def test_only_ports_80_and_443_unless_widened(settings: Any) -> None:
    for url in ("http://93.184.216.34:8080/hook", "https://93.184.216.34:6379/", "http://93.184.216.34:22/"):
        with pytest.raises(UnsafeTargetError, match="ALERT_WEBHOOK_ALLOWED_PORTS"):
            check_webhook_target(url)
    assert check_webhook_target("http://93.184.216.34:80/hook") == ["93.184.216.34"]
    settings.ALERT_WEBHOOK_ALLOWED_PORTS = [443, 8443]
    assert check_webhook_target("https://93.184.216.34:8443/hook") == ["93.184.216.34"]


# --------------------------------------------------------------------------------------------- finding 7: rebinding
@pytest.mark.usefixtures("allow_private")
def test_the_checked_address_is_the_one_connected_to(
    user: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebinding resolver answers once with the receiver, then with nothing: the send must not ask again."""
    port = receiver.server.server_address[1]
    real = socket.getaddrinfo
    calls: list[str] = []

    def rebinding_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.rebind.test":
            calls.append(host)
            if len(calls) > 1:
                raise socket.gaierror(socket.EAI_NONAME, "second answer: somewhere else")
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    sub = AlertSubscription.objects.create(user=user, target=f"http://hooks.rebind.test:{port}/hook")
    calls.clear()  # the subscription is not cleaned on create; only the send path counts
    result = attempt_delivery(make_whale(1).pk, sub.pk)
    assert result.outcome is Outcome.SENT, result.error
    assert calls == ["hooks.rebind.test"]
    # The Host header still names the URL's host (virtual hosts, TLS SNI and certificate checks use it).
    assert receiver.requests[0]["host"] == f"hooks.rebind.test:{port}"


def test_post_json_connects_to_the_given_address_without_resolving(receiver: Receiver) -> None:
    port = receiver.server.server_address[1]
    url = f"http://name-that-does-not-resolve.invalid:{port}/hook"
    assert delivery.post_json(url, {"text": "t"}, "1:1", timeout=5, address="127.0.0.1") == 200
    assert receiver.requests[0]["path"] == "/hook"


def test_https_is_tls_to_the_pinned_address_and_verified(receiver: Receiver) -> None:
    """The receiver speaks plain HTTP: a TLS handshake with it fails, so nothing is sent in clear text."""
    port = receiver.server.server_address[1]
    with pytest.raises(delivery.TransientDeliveryError, match=r"cannot reach localhost:\d+: SSL"):
        delivery.post_json(f"https://localhost:{port}/hook", {"text": "t"}, "1:1", timeout=5, address="127.0.0.1")
    assert receiver.requests == []


def test_proxy_environment_is_ignored(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert delivery.post_json(receiver.url(), {"text": "t"}, "1:1", timeout=5) == 200
    assert len(receiver.requests) == 1


# --------------------------------------------------------------------------------------------- findings 2 and 7: errors
@pytest.mark.usefixtures("allow_private")
def test_webhook_secret_never_in_last_error_or_logs(user: Any, caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver(statuses=[500, 500])
    try:
        secret_path = "/services/T0000/B0000/XXXXsecretXXXXtoken"
        sub = AlertSubscription.objects.create(user=user, target=receiver.url(secret_path))
        alert = make_whale(1)
        with caplog.at_level(logging.DEBUG):
            deliver_alert.apply(args=(alert.pk, sub.pk), retries=5)
        row = AlertDelivery.objects.get()
        assert row.status == DeliveryStatus.FAILED
        assert "secret" not in row.last_error
        logged = " ".join(str(record.__dict__) for record in caplog.records)  # messages and their extra fields
        assert "secret" not in logged
        # The operator still learns which host answered what.
        assert f"HTTP 500 from 127.0.0.1:{receiver.server.server_address[1]}" in logged
    finally:
        receiver.close()


@pytest.mark.usefixtures("allow_private")
def test_subscriber_cannot_tell_an_answering_target_from_a_silent_one(user: Any) -> None:
    answering = Receiver(statuses=[404])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        silent_port = sock.getsockname()[1]
    try:
        a = AlertSubscription.objects.create(user=user, target=answering.url())
        b = AlertSubscription.objects.create(user=user, target=f"http://127.0.0.1:{silent_port}/hook")
        alert = make_whale(1)
        assert attempt_delivery(alert.pk, a.pk).outcome is Outcome.FAILED
        assert attempt_delivery(alert.pk, b.pk, final=True).outcome is Outcome.FAILED
        errors = {d.subscription_id: d.last_error for d in AlertDelivery.objects.all()}
        assert errors == {a.pk: FAILED_TEXT, b.pk: FAILED_TEXT}
    finally:
        answering.close()


def test_refused_target_says_refused_before_any_connection(user: Any, receiver: Receiver, settings: Any) -> None:
    sub = AlertSubscription.objects.create(user=user, target=receiver.url())
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = False
    assert attempt_delivery(make_whale(1).pk, sub.pk).outcome is Outcome.FAILED
    assert AlertDelivery.objects.get().last_error.startswith("refused: ")
    assert receiver.requests == []


# --------------------------------------------------------------------------------------------- finding 8
def test_bad_email_header_is_a_failed_delivery_with_a_reason(user: Any, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    sub = AlertSubscription.objects.create(user=user, target="ops@example.com", channel=Channel.EMAIL)
    alert = make_whale(1, symbol="BTC\nBcc: victim@example.com")
    result = attempt_delivery(alert.pk, sub.pk)
    assert result.outcome is Outcome.FAILED
    row = AlertDelivery.objects.get()
    assert row.status == DeliveryStatus.FAILED
    assert "e-mail header" in row.last_error
    assert mail.outbox == []


@pytest.mark.usefixtures("allow_private")
def test_pending_deliveries_are_requeued_by_beat(
    user: Any, receiver: Receiver, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptoproject.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    settings.ALERT_REQUEUE_AFTER_SECONDS = 300
    sub = AlertSubscription.objects.create(user=user, target=receiver.url())
    old, fresh = make_whale(1), make_whale(2)
    # A delivery whose task was lost 10 minutes ago, and one created just now (its task may still be queued).
    AlertDelivery.objects.create(alert=old, subscription=sub)
    AlertDelivery.objects.filter(alert=old).update(created_at=timezone.now() - timedelta(minutes=10))
    AlertDelivery.objects.create(alert=fresh, subscription=sub)
    assert stale_pending(300) == [(old.pk, sub.pk)]
    assert requeue_pending_deliveries.apply().get() == 1
    assert AlertDelivery.objects.get(alert=old).status == DeliveryStatus.SENT
    assert AlertDelivery.objects.get(alert=fresh).status == DeliveryStatus.PENDING
    assert [r["delivery"] for r in receiver.requests] == [f"{old.pk}:{sub.pk}"]
    assert stale_pending(300) == []
    assert "dashboard-requeue-pending-deliveries" in app.conf.beat_schedule


def test_delivery_tasks_retry_database_errors_with_backoff() -> None:
    tasks: list[Any] = [deliver_alert, requeue_pending_deliveries]
    for task in tasks:
        assert OperationalError in task.autoretry_for
        assert task.retry_backoff
        assert task.retry_jitter


@pytest.mark.usefixtures("allow_private")
def test_a_delivery_requeued_forever_gives_up(user: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sub = AlertSubscription.objects.create(user=user, target=f"http://127.0.0.1:{port}/hook")
    alert = make_whale(1)
    AlertDelivery.objects.create(alert=alert, subscription=sub, attempts=delivery.MAX_ATTEMPTS - 1)
    assert attempt_delivery(alert.pk, sub.pk).outcome is Outcome.FAILED
    assert AlertDelivery.objects.get().status == DeliveryStatus.FAILED
