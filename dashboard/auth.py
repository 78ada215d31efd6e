"""Login when ``settings.DASHBOARD_LOGIN_REQUIRED`` is true: one decorator for pages, one DRF permission for the API.

The setting is read on every request (not at import), so tests and operators can switch it without a reload.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., HttpResponse])


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def login_required(method: str = "GET") -> bool:
    """Whether a request with ``method`` to the dashboard or the API needs a logged-in user right now: always when
    ``DASHBOARD_LOGIN_REQUIRED``, and for writes when the dashboard is public read-only (``DASHBOARD_PUBLIC_READONLY``).
    """
    if settings.DASHBOARD_LOGIN_REQUIRED:
        return True
    return bool(settings.DASHBOARD_PUBLIC_READONLY) and method.upper() not in _SAFE_METHODS


def login_required_if_configured(view: ViewFunc) -> ViewFunc:
    """Page decorator: redirect anonymous users to the login page when login is required."""

    @wraps(view)
    def _wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if login_required(request.method or "GET") and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return cast(ViewFunc, _wrapped)


class LoginRequiredIfConfigured(BasePermission):
    """DRF permission: authenticated users only when login is required, everyone otherwise."""

    message = "Authentication required: log in or send 'Authorization: Token <key>'."

    def has_permission(self, request: Request, view: APIView) -> bool:
        """True when login is not required (``DASHBOARD_LOGIN_REQUIRED``) or the user is authenticated."""
        return not login_required(request.method or "GET") or bool(request.user and request.user.is_authenticated)
