"""Whale-alert delivery: matching, message formats, the webhook SSRF guard, HTTP and e-mail sending.

Exactly-once per (alert, subscription) rests on the unique :class:`~dashboard.models.AlertDelivery` row:

1. :func:`fan_out` creates the rows (``INSERT ... ON CONFLICT DO NOTHING``) for every matching subscription and
   returns the pairs that still need sending.
2. :func:`attempt_delivery` locks the row (``SELECT ... FOR UPDATE SKIP LOCKED``) in a transaction, returns at once
   when it is already ``sent`` or another worker holds it, sends, and marks it ``sent`` in the same transaction.
   A duplicate task therefore either waits out nothing (skips the locked row) or sees ``sent``.

The one window left: the receiver accepted the request but the process died (or PostgreSQL went away) before the
transaction committed. The row is still ``pending``, the task is re-delivered (``acks_late``) and the receiver gets
the alert a second time. No protocol can close that window without the receiver's help; the webhook body carries
a stable ``id`` (``<alert id>:<subscription id>``, also in the ``X-Alert-Delivery`` header) so receivers can drop
the duplicate.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from analytics.models import WhaleAlert
from dashboard.api.serializers import dec
from dashboard.models import AlertDelivery, AlertSubscription, Channel, DeliveryStatus, WebhookFormat

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5.0


class UnsafeTargetError(ValueError):
    """A webhook URL that must not be called: bad scheme, unresolvable, or a private/reserved address."""


class TransientDeliveryError(RuntimeError):
    """A failure that may pass on retry: network error, timeout, HTTP 429 or 5xx."""


class PermanentDeliveryError(RuntimeError):
    """A failure that retrying cannot fix: HTTP 4xx, refused target, invalid address."""


def _is_forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return bool(
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def check_webhook_target(url: str, allow_private: bool | None = None) -> list[str]:
    """Refuse ``url`` unless it is http(s) and every address its host resolves to is public.

    ``allow_private`` defaults to ``settings.ALERT_WEBHOOK_ALLOW_PRIVATE`` (tests use a local receiver).
    Returns the resolved addresses. Called when a subscription is saved and again before every send, because
    DNS answers change.
    """
    allow = settings.ALERT_WEBHOOK_ALLOW_PRIVATE if allow_private is None else allow_private
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeTargetError(f"webhook URL scheme must be http or https, not {parts.scheme or 'none'!r}")
    host = parts.hostname
    if not host:
        raise UnsafeTargetError("webhook URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeTargetError(f"webhook URL has an invalid port: {exc}") from exc
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTargetError(f"webhook host {host!r} does not resolve: {exc}") from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    if not allow:
        for raw in addresses:
            address = ipaddress.ip_address(raw.split("%", 1)[0])
            if _is_forbidden(address):
                raise UnsafeTargetError(
                    f"webhook host {host!r} resolves to {raw}, a private, loopback, link-local or reserved address "
                    "(set ALERT_WEBHOOK_ALLOW_PRIVATE=true to allow it)"
                )
    return addresses


# --------------------------------------------------------------------------------------------- messages
def alert_fields(alert: WhaleAlert) -> dict[str, Any]:
    """The alert as JSON-safe fields (decimals as strings, time as ISO 8601 and epoch ms)."""
    return {
        "id": alert.pk,
        "exchange": alert.exchange,
        "symbol": alert.symbol,
        "trade_id": alert.trade_id,
        "side": alert.side,
        "price": dec(alert.price),
        "quantity": dec(alert.quantity),
        "notional": dec(alert.notional),
        "traded_at": alert.traded_at.isoformat(),
        "t": int(alert.traded_at.timestamp() * 1000),
    }


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


def alert_text(alert: WhaleAlert) -> str:
    """One human line: ``Whale BUY 12.5 BTCUSDT @ 61837.63 on binance = 772,970 (2024-08-09 00:00:55 UTC)``."""
    notional = f"{alert.notional.quantize(Decimal('1')):,}"
    when = alert.traded_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"Whale {alert.side.upper()} {_plain(alert.quantity)} {alert.symbol} @ {_plain(alert.price)} "
        f"on {alert.exchange} = {notional} ({when})"
    )


def webhook_body(alert: WhaleAlert, subscription: AlertSubscription) -> dict[str, Any]:
    """The JSON body for the subscription's format (Slack ``text``, Discord ``content``, or generic)."""
    text = alert_text(alert)
    delivery_id = f"{alert.pk}:{subscription.pk}"
    if subscription.format == WebhookFormat.DISCORD:
        return {"content": text}
    if subscription.format == WebhookFormat.GENERIC:
        return {"id": delivery_id, "text": text, "alert": alert_fields(alert)}
    return {"text": text}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could point at a private address after the guard passed: treat it as an error."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def post_json(url: str, body: dict[str, Any], delivery_id: str, timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> int:
    """POST ``body`` as JSON; returns the HTTP status, raises Transient/PermanentDeliveryError otherwise."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "cryptoproject-alerts/1",
            "X-Alert-Delivery": delivery_id,
        },
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            raise TransientDeliveryError(f"HTTP {exc.code} from {url}") from exc
        raise PermanentDeliveryError(f"HTTP {exc.code} from {url}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise TransientDeliveryError(f"cannot reach {url}: {exc}") from exc


def send(alert: WhaleAlert, subscription: AlertSubscription) -> None:
    """Deliver one alert over the subscription's channel (webhook re-checked by the SSRF guard first)."""
    if subscription.channel == Channel.EMAIL:
        subject = f"Whale alert: {alert.side} {alert.symbol} on {alert.exchange}"
        try:
            send_mail(subject, alert_text(alert), settings.DEFAULT_FROM_EMAIL, [subscription.target])
        except (OSError, ConnectionError) as exc:
            raise TransientDeliveryError(f"mail server: {exc}") from exc
        return
    try:
        check_webhook_target(subscription.target)
    except UnsafeTargetError as exc:
        raise PermanentDeliveryError(str(exc)) from exc
    post_json(subscription.target, webhook_body(alert, subscription), f"{alert.pk}:{subscription.pk}")


# --------------------------------------------------------------------------------------------- fan-out
def fan_out(alert_ids: Iterable[int]) -> list[tuple[int, int]]:
    """Create the pending deliveries for these alerts' matching subscriptions; return the (alert, subscription)
    pairs still pending. Idempotent: running it again creates nothing new and hands out nothing finished.

    Active subscriptions are few (people, not trades): they are read once and matched in memory, so a batch of
    alerts costs three queries whatever its size.
    """
    ids = sorted(set(alert_ids))
    alerts = list(WhaleAlert.objects.filter(pk__in=ids).order_by("pk"))
    if not alerts:
        return []
    subscriptions = list(AlertSubscription.objects.filter(active=True).order_by("pk"))
    pairs = [(alert.pk, sub.pk) for alert in alerts for sub in subscriptions if sub.matches(alert)]
    if not pairs:
        return []
    AlertDelivery.objects.bulk_create(
        [AlertDelivery(alert_id=a, subscription_id=s) for a, s in pairs], ignore_conflicts=True
    )
    # Sent rows are done; failed ones gave up (4xx, refused target, retries exhausted) and are not retried by a
    # replayed hand-off, which may repeat a whole range's alerts.
    finished = set(
        AlertDelivery.objects.filter(
            alert_id__in=ids, status__in=[DeliveryStatus.SENT, DeliveryStatus.FAILED]
        ).values_list("alert_id", "subscription_id")
    )
    return [pair for pair in pairs if pair not in finished]


# --------------------------------------------------------------------------------------------- one delivery
class Outcome(enum.Enum):
    """What one attempt did."""

    SENT = "sent"
    ALREADY_SENT = "already_sent"
    BUSY = "busy"  # another worker holds the row right now
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"  # the alert or subscription no longer exists, or the subscription was deactivated


@dataclass(frozen=True)
class AttemptResult:
    """The outcome of one attempt, with the error text when it did not succeed."""

    outcome: Outcome
    error: str = ""
    attempts: int = 0


def attempt_delivery(alert_id: int, subscription_id: int, final: bool = False) -> AttemptResult:
    """Send one alert to one subscription at most once; ``final`` marks a transient failure as ``failed``."""
    try:
        alert = WhaleAlert.objects.get(pk=alert_id)
        subscription = AlertSubscription.objects.get(pk=subscription_id)
    except (WhaleAlert.DoesNotExist, AlertSubscription.DoesNotExist):
        return AttemptResult(Outcome.GONE)
    AlertDelivery.objects.get_or_create(alert=alert, subscription=subscription)
    with transaction.atomic():
        delivery = (
            AlertDelivery.objects.select_for_update(skip_locked=True)
            .filter(alert=alert, subscription=subscription)
            .first()
        )
        if delivery is None:
            return AttemptResult(Outcome.BUSY)
        if delivery.status == DeliveryStatus.SENT:
            return AttemptResult(Outcome.ALREADY_SENT, attempts=delivery.attempts)
        if not subscription.active:
            return AttemptResult(Outcome.GONE, attempts=delivery.attempts)
        delivery.attempts += 1
        try:
            send(alert, subscription)
        except TransientDeliveryError as exc:
            delivery.last_error = str(exc)[:2000]
            delivery.status = DeliveryStatus.FAILED if final else DeliveryStatus.PENDING
            delivery.save(update_fields=["attempts", "last_error", "status"])
            outcome = Outcome.FAILED if final else Outcome.RETRY
            return AttemptResult(outcome, str(exc), delivery.attempts)
        except PermanentDeliveryError as exc:
            delivery.last_error = str(exc)[:2000]
            delivery.status = DeliveryStatus.FAILED
            delivery.save(update_fields=["attempts", "last_error", "status"])
            return AttemptResult(Outcome.FAILED, str(exc), delivery.attempts)
        delivery.status = DeliveryStatus.SENT
        delivery.sent_at = timezone.now()
        delivery.last_error = ""
        delivery.save(update_fields=["attempts", "last_error", "status", "sent_at"])
        return AttemptResult(Outcome.SENT, attempts=delivery.attempts)
