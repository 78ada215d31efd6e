"""Invitations, API tokens and watchlists. Secrets (invitation and API tokens) are stored only as sha256 hashes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone


class Invitation(models.Model):
    """A staff invitation to create an account, even while self sign-up is closed.

    The link carries a random token; only its sha256 is stored. It works once (``used_at``) and until
    ``expires_at``.
    """

    email = models.EmailField()
    token_hash = models.CharField(max_length=64, unique=True, help_text="sha256 of the link's token, hex.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="invitations_sent"
    )
    created_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="invitation_used"
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"invitation for {self.email}"


class ApiToken(models.Model):
    """A user's API token for ``Authorization: Bearer <token>``; the secret is shown once, only its sha256 kept."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=16, help_text="The token's first characters, shown to tell tokens apart.")
    key_hash = models.CharField(max_length=64, unique=True, help_text="sha256 of the whole token, hex.")
    created_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="accounts_token_owner")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def active(self) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and self.expires_at > timezone.now()


class WatchlistItem(models.Model):
    """One market of a user's watchlist; ``position`` orders the list (0 first)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watchlist")
    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["owner", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "exchange", "symbol"], name="accounts_watchlist_market"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol}"
