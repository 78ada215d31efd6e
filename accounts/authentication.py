"""DRF authentication by the users' own API tokens: ``Authorization: Bearer cpk_...``.

A revoked, expired or unknown token is refused with 401 (never treated as anonymous); an inactive user too.
"""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts import tokens

KEYWORD = "Bearer"


class ApiTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>`` with a token from :mod:`accounts.tokens`."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        """The token's owner and row; None when the header is not a Bearer one (other schemes may apply)."""
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Invalid Bearer header: expected 'Bearer <token>'.")
        try:
            presented = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token.") from None
        row = tokens.lookup(presented)
        # One message for unknown, revoked and expired: the answer does not help guess tokens.
        if row is None or not row.active or not row.owner.is_active:
            raise AuthenticationFailed("Invalid, expired or revoked token.")
        tokens.touch(row)
        return row.owner, row

    def authenticate_header(self, request: Request) -> str:
        """The ``WWW-Authenticate`` value of a 401."""
        return f'{KEYWORD} realm="api"'
