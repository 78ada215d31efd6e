"""API tokens: ``cpk_<8 hex>_<43 URL-safe characters>``. The first 12 characters (``cpk_`` and the 8 hex) are the
prefix shown to tell tokens apart; the database keeps the prefix and the sha256 of the whole token, never the token.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.hashing import digest, new_secret
from accounts.models import ApiToken
from accounts.quotas import check_quota

TOKEN_PREFIX = "cpk_"
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
NAME_MAX_LENGTH = 64
DEFAULT_DAYS = 90
# last_used_at is written at most this often per token: not one UPDATE per API request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(ValueError):
    """A bad token request; ``param`` names the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def active_tokens(user: Any) -> Any:
    """The user's tokens that are neither revoked nor expired."""
    return ApiToken.objects.filter(owner=user.pk, revoked_at__isnull=True, expires_at__gt=timezone.now())


def create_token(user: Any, name: str, days: int = DEFAULT_DAYS) -> tuple[ApiToken, str]:
    """A new token for ``user``, valid ``days`` days; returns the row and the token (shown once, never stored).

    Raises :class:`TokenError` for a bad name or duration, and ``QuotaExceeded`` past ``ACCOUNTS_MAX_API_TOKENS``
    active tokens.
    """
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX_LENGTH:
        raise TokenError("name", f"'name' is required, at most {NAME_MAX_LENGTH} characters.")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= settings.ACCOUNTS_TOKEN_MAX_DAYS:
        raise TokenError(
            "expires_in_days", f"'expires_in_days' must be an integer from 1 to {settings.ACCOUNTS_TOKEN_MAX_DAYS}."
        )
    token = f"{TOKEN_PREFIX}{secrets.token_hex(4)}_{new_secret(32)}"
    with transaction.atomic():
        # The user's row lock serialises two creations, so both cannot pass the quota at once.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        check_quota(
            user, "active API tokens", active_tokens(user).count(), settings.ACCOUNTS_MAX_API_TOKENS, param="name"
        )
        row = ApiToken.objects.create(
            owner=user,
            name=name,
            prefix=token[:PREFIX_LENGTH],
            key_hash=digest(token),
            expires_at=timezone.now() + timedelta(days=days),
        )
    return row, token


def revoke_token(user: Any, token_id: int) -> bool:
    """Revoke the user's token ``token_id``; False when the user has no such token (another user's included)."""
    found = ApiToken.objects.filter(owner=user.pk, pk=token_id).first()
    if found is None:
        return False
    if found.revoked_at is None:
        ApiToken.objects.filter(pk=found.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    return True


def token_item(row: ApiToken) -> dict[str, Any]:
    """What the API and the pages show of a token (never its secret)."""
    now = timezone.now()
    return {
        "id": row.pk,
        "name": row.name,
        "prefix": row.prefix,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "expires_at": row.expires_at.isoformat(),
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "status": "revoked" if row.revoked_at else ("expired" if row.expires_at <= now else "active"),
    }


def user_tokens(user: Any) -> list[ApiToken]:
    """The user's tokens, newest first (revoked and expired ones too)."""
    return list(ApiToken.objects.filter(owner=user.pk).order_by("-created_at", "-id"))


def lookup(token: str) -> ApiToken | None:
    """The token row the presented ``token`` hashes to (whatever its state), or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    return ApiToken.objects.select_related("owner").filter(key_hash=digest(token)).first()


def touch(row: ApiToken) -> None:
    """Record a use, at most once per :data:`LAST_USED_RESOLUTION`."""
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
