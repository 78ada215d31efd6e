"""Whale-alert subscriptions and their deliveries.

One :class:`AlertDelivery` row per (alert, subscription), unique in the database: that row is what guarantees an
alert is never sent twice to one subscription (see ``dashboard.delivery``).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, MinValueValidator, URLValidator
from django.db import models
from django.db.models.functions import Now

from analytics.models import WhaleAlert
from dashboard.webhook_targets import UnsafeTargetError, check_webhook_target


class Channel(models.TextChoices):
    """How a subscription is delivered."""

    WEBHOOK = "webhook", "Webhook"
    EMAIL = "email", "E-mail"


class WebhookFormat(models.TextChoices):
    """The JSON body a webhook receives."""

    SLACK = "slack", 'Slack ({"text": ...})'
    DISCORD = "discord", 'Discord ({"content": ...})'
    GENERIC = "generic", 'Generic ({"text": ..., "alert": {...}})'


class DeliveryStatus(models.TextChoices):
    """Where one delivery stands."""

    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class AlertSubscription(models.Model):
    """A user's wish to hear about whale trades of one symbol (or all) above a notional."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_subscriptions")
    exchange = models.CharField(max_length=16, blank=True, help_text="Blank: every exchange.")
    symbol = models.CharField(max_length=32, blank=True, help_text="Blank: every symbol (e.g. BTCUSDT, BTC-USD).")
    min_notional = models.DecimalField(
        max_digits=20,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Only alerts whose notional (quote currency) is at least this.",
    )
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.WEBHOOK)
    target = models.CharField(max_length=500, help_text="Webhook URL (https://...) or e-mail address.")
    format = models.CharField(max_length=8, choices=WebhookFormat.choices, default=WebhookFormat.SLACK)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        indexes = [models.Index(fields=["active", "exchange", "symbol"], name="subscription_match")]

    def __str__(self) -> str:
        scope = f"{self.exchange or '*'}:{self.symbol or '*'}"
        return f"{scope} >= {self.min_notional} -> {self.channel} {self.target}"

    def clean(self) -> None:
        """Validate the target for the channel; webhook hosts must not be private (SSRF guard)."""
        self.exchange = self.exchange.strip().lower()
        self.symbol = self.symbol.strip().upper()
        self.target = self.target.strip()
        if self.channel == Channel.EMAIL:
            try:
                EmailValidator()(self.target)
            except ValidationError as exc:
                raise ValidationError({"target": "Enter a valid e-mail address."}) from exc
            return
        try:
            URLValidator(schemes=["http", "https"])(self.target)
        except ValidationError as exc:
            raise ValidationError({"target": "Enter a valid http(s) URL."}) from exc
        try:
            check_webhook_target(self.target)
        except UnsafeTargetError as exc:
            raise ValidationError({"target": str(exc)}) from exc

    def matches(self, alert: WhaleAlert) -> bool:
        """True when ``alert`` is in this subscription's scope and at/above its minimum notional."""
        return (
            self.active
            and (not self.exchange or self.exchange == alert.exchange)
            and (not self.symbol or self.symbol.upper() == alert.symbol.upper())
            and alert.notional >= self.min_notional
        )


class AlertDelivery(models.Model):
    """One alert to one subscription: claimed once, then sent or failed, with attempts and the last error."""

    alert = models.ForeignKey(WhaleAlert, on_delete=models.CASCADE, related_name="deliveries")
    subscription = models.ForeignKey(AlertSubscription, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        verbose_name_plural = "alert deliveries"
        constraints = [
            models.UniqueConstraint(fields=["alert", "subscription"], name="one_delivery_per_alert_subscription"),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="delivery_status")]

    def __str__(self) -> str:
        return f"alert {self.alert_id} -> subscription {self.subscription_id}: {self.status}"
