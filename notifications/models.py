"""Where a user hears about things (:class:`Destination`) and the outbox of messages to them (:class:`Delivery`).

The outbox is the delivery guarantee: whoever fires (an alert) creates its :class:`Delivery` rows in its own
transaction (:func:`notifications.outbox.enqueue`), so a firing that commits has its deliveries and one that rolls
back has none. Senders claim rows, commit the attempt, then send outside any transaction (docs/ALERTS.md).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now


class ChannelKind(models.TextChoices):
    """How a message reaches its owner; the value is the channel's name in the API (``"channels": [...]``)."""

    IN_APP = "in_app", "In the page"
    EMAIL = "email", "E-mail"
    SMS = "sms", "SMS (Twilio)"
    TELEGRAM = "telegram", "Telegram"
    WEBHOOK = "webhook", "Webhook"


class WebhookFormat(models.TextChoices):
    """The JSON body a webhook receives."""

    SLACK = "slack", 'Slack ({"text": ...})'
    DISCORD = "discord", 'Discord ({"content": ...})'
    GENERIC = "generic", "Generic JSON, signed (HMAC-SHA256) and with an idempotency key"


class Destination(models.Model):
    """One place a user receives messages of one channel kind: an address, a number, a chat, a URL."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="destinations")
    kind = models.CharField(max_length=8, choices=ChannelKind.choices)
    target = models.CharField(
        max_length=500,
        blank=True,
        help_text="E-mail address, E.164 phone number, Telegram chat id or webhook URL; blank for in-app.",
    )
    format = models.CharField(
        max_length=8, choices=WebhookFormat.choices, default=WebhookFormat.GENERIC, help_text="Webhooks only."
    )
    secret = models.CharField(max_length=128, blank=True, help_text="The HMAC-SHA256 key of a generic webhook.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "kind", "target"], name="destination_per_owner_kind_target"),
        ]

    def __str__(self) -> str:
        return f"{self.owner_id} {self.kind} {self.target}".rstrip()


class DeliveryStatus(models.TextChoices):
    """Where one delivery stands."""

    PENDING = "pending", "Pending"  # waiting for its next attempt (next_attempt_at)
    SENDING = "sending", "Sending"  # claimed by a sender until lease_until
    SENT = "sent", "Sent"
    DEAD = "dead", "Dead"  # gave up after the last attempt: shown to its owner


class Delivery(models.Model):
    """One message to one destination: the outbox row a sender claims, attempts and marks sent or dead.

    ``key`` is unique: the idempotency key receivers see (webhook header, Telegram/Twilio retries), and what makes
    enqueuing the same message twice a no-op.
    """

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=8, choices=ChannelKind.choices)
    key = models.CharField(max_length=128, unique=True)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    payload = models.JSONField(default=dict, blank=True, help_text="Structured fields for generic webhooks.")
    status = models.CharField(max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_default=Now())
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            # Retention (notifications.retention) reads only the finished rows, oldest first.
            models.Index(
                fields=["created_at"],
                name="delivery_finished_created",
                condition=models.Q(status__in=["sent", "dead"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} -> {self.kind}: {self.status}"


class Notification(models.Model):
    """An in-app message: the notifications list, and the live toast pushed over Channels when it is created."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    key = models.CharField(max_length=128, unique=True)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "-id"], name="notification_owner_recent")]

    def __str__(self) -> str:
        return f"{self.owner_id}: {self.subject}"


class CircuitBreaker(models.Model):
    """The health of one target (a webhook host, the SMS or Telegram API, the SMTP server), for the sender.

    Closed (``open_until`` null): deliveries go out; each transient failure adds to ``failures`` and a success
    resets it. After ``NOTIFY_BREAKER_FAILURES`` in a row it opens (``open_until`` = now + cool-down): its deliveries
    are deferred, neither attempted nor counted. Once the cool-down has passed it is half-open: one delivery goes out
    as the probe (``probe_until`` is its lease); success closes it, failure opens it again.
    """

    target = models.CharField(max_length=300, unique=True)
    failures = models.PositiveIntegerField(default=0)
    open_until = models.DateTimeField(null=True, blank=True)
    probe_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        state = "closed" if self.open_until is None else f"open until {self.open_until:%H:%M:%S}"
        return f"{self.target}: {state} ({self.failures} failures)"
