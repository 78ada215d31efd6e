"""Whale-alert delivery: matching, message formats, HTTP and e-mail sending (the SSRF guard: webhook_targets).

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
import http.client
import json
import logging
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any, TypedDict
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import BadHeaderError, send_mail
from django.db import transaction
from django.utils import timezone

from analytics.models import WhaleAlert
from analytics.payloads import AlertFields, alert_fields
from cryptoproject.security import redact_text, url_host
from dashboard.models import AlertDelivery, AlertSubscription, Channel, DeliveryStatus, WebhookFormat
from dashboard.webhook_targets import UnsafeTargetError, resolve_webhook_target

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5.0
# A delivery re-queued by beat again and again (a receiver down for hours) gives up after this many attempts.
MAX_ATTEMPTS = 20
REQUEUE_BATCH = 1000


class DeliveryError(RuntimeError):
    """A failed attempt: ``str(exc)`` is the operator's detail (host, status); ``public`` is what the subscriber
    sees in ``last_error``: "refused: <our reason>" or "failed: ...", never what the target answered."""

    def __init__(self, detail: str, public: str = "failed: the webhook did not accept the alert") -> None:
        super().__init__(detail)
        self.public = public


class TransientDeliveryError(DeliveryError):
    """A failure that may pass on retry: network error, timeout, HTTP 429 or 5xx."""


class PermanentDeliveryError(DeliveryError):
    """A failure that retrying cannot fix: HTTP 3xx/4xx, refused target, invalid address or header."""


# --------------------------------------------------------------------------------------------- messages
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


class SlackBody(TypedDict):
    """The Slack incoming-webhook body: one line of text."""

    text: str


class DiscordBody(TypedDict):
    """The Discord webhook body: one line of text."""

    content: str


class GenericBody(TypedDict):
    """The generic webhook body: a delivery id stable across retries, the text and the alert's fields."""

    id: str  # "<alert id>:<subscription id>", stable across retries: receivers drop a duplicate by it
    text: str
    alert: AlertFields


WebhookBody = SlackBody | DiscordBody | GenericBody


def webhook_body(alert: WhaleAlert, subscription: AlertSubscription) -> WebhookBody:
    """The JSON body for the subscription's format (Slack ``text``, Discord ``content``, or generic)."""
    text = alert_text(alert)
    delivery_id = f"{alert.pk}:{subscription.pk}"
    if subscription.format == WebhookFormat.DISCORD:
        return {"content": text}
    if subscription.format == WebhookFormat.GENERIC:
        return {"id": delivery_id, "text": text, "alert": alert_fields(alert)}
    return {"text": text}


def _pinned(address: str | None) -> Callable[..., socket.socket]:
    """``socket.create_connection`` that dials ``address`` (when given) instead of the host name."""

    def create(target: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        return socket.create_connection((address, target[1]) if address else target, *args, **kwargs)

    return create


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to ``address`` (already checked) while the Host header names the URL's host."""

    def __init__(self, host: str, port: int, address: str | None, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        # http.client opens its socket through this attribute; the host name stays for Host, SNI and certificate.
        self._create_connection = _pinned(address)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to ``address``; the certificate is checked against the URL's host name (SNI and verification)."""

    def __init__(self, host: str, port: int, address: str | None, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        # http.client opens its socket through this attribute; the host name stays for Host, SNI and certificate.
        self._create_connection = _pinned(address)


def post_json(
    url: str, body: WebhookBody, delivery_id: str, timeout: float = WEBHOOK_TIMEOUT_SECONDS, address: str = ""
) -> int:
    """POST ``body`` as JSON; returns the 2xx status, raises Transient/PermanentDeliveryError otherwise.

    ``address``: connect there instead of resolving the host again (the address the SSRF guard checked). Plain
    ``http.client``: no proxy from the environment, no redirect followed (a 3xx is a permanent failure).
    Errors name the host only: the path of a Slack or Discord webhook URL is its secret.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = url_host(url)
    factory = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = factory(host, port, address or None, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "User-Agent": "cryptoproject-alerts/1",
                "X-Alert-Delivery": delivery_id,
            },
        )
        status = int(connection.getresponse().status)
    except (OSError, http.client.HTTPException) as exc:
        raise TransientDeliveryError(f"cannot reach {where}: {type(exc).__name__}") from exc
    finally:
        connection.close()
    if 200 <= status < 300:
        return status
    if status == 429 or status >= 500:
        raise TransientDeliveryError(f"HTTP {status} from {where}")
    raise PermanentDeliveryError(f"HTTP {status} from {where}")


def send(alert: WhaleAlert, subscription: AlertSubscription) -> None:
    """Deliver one alert over the subscription's channel (webhook re-checked by the SSRF guard first)."""
    if subscription.channel == Channel.EMAIL:
        subject = f"Whale alert: {alert.side} {alert.symbol} on {alert.exchange}"
        try:
            send_mail(subject, alert_text(alert), settings.DEFAULT_FROM_EMAIL, [subscription.target])
        except BadHeaderError as exc:
            # A line break in a header (a symbol, a target): retrying cannot fix it.
            raise PermanentDeliveryError(
                f"invalid e-mail header: {exc}", public="failed: the alert cannot be written as an e-mail header"
            ) from exc
        except (OSError, ConnectionError) as exc:
            raise TransientDeliveryError(
                f"mail server: {redact_text(str(exc))}", public="failed: the mail server is unavailable"
            ) from exc
        return
    try:
        target = resolve_webhook_target(subscription.target)
    except UnsafeTargetError as exc:
        raise PermanentDeliveryError(str(exc), public=f"refused: {exc}") from exc
    post_json(
        subscription.target,
        webhook_body(alert, subscription),
        f"{alert.pk}:{subscription.pk}",
        address=target.addresses[0],
    )


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
        final = final or delivery.attempts >= MAX_ATTEMPTS
        try:
            send(alert, subscription)
        except TransientDeliveryError as exc:
            delivery.last_error = exc.public[:2000]
            delivery.status = DeliveryStatus.FAILED if final else DeliveryStatus.PENDING
            delivery.save(update_fields=["attempts", "last_error", "status"])
            outcome = Outcome.FAILED if final else Outcome.RETRY
            return AttemptResult(outcome, str(exc), delivery.attempts)
        except PermanentDeliveryError as exc:
            delivery.last_error = exc.public[:2000]
            delivery.status = DeliveryStatus.FAILED
            delivery.save(update_fields=["attempts", "last_error", "status"])
            return AttemptResult(Outcome.FAILED, str(exc), delivery.attempts)
        delivery.status = DeliveryStatus.SENT
        delivery.sent_at = timezone.now()
        delivery.last_error = ""
        delivery.save(update_fields=["attempts", "last_error", "status", "sent_at"])
        return AttemptResult(Outcome.SENT, attempts=delivery.attempts)


def stale_pending(older_than_seconds: int, limit: int = REQUEUE_BATCH) -> list[tuple[int, int]]:
    """(alert, subscription) pairs of active subscriptions still pending ``older_than_seconds`` after creation:
    their task was lost (worker gone, broker flushed) or every retry hit a database blip. Oldest first."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    rows = (
        AlertDelivery.objects.filter(status=DeliveryStatus.PENDING, created_at__lt=cutoff, subscription__active=True)
        .order_by("created_at", "pk")
        .values_list("alert_id", "subscription_id")[:limit]
    )
    return [(int(a), int(s)) for a, s in rows]
