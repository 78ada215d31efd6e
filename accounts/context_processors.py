"""Template context of the accounts app."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def accounts(request: HttpRequest) -> dict[str, bool]:
    """``accounts_signup_open``: whether pages link to self sign-up (read per request, like the setting's views)."""
    return {"accounts_signup_open": bool(settings.ACCOUNTS_SIGNUP_OPEN)}
