"""Deploy-time system checks (``manage.py check --deploy``)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.checks import CheckMessage, Error, Info, Tags, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

logger = logging.getLogger(__name__)

DEMO_USERNAME = "demo"
# The accounts the project itself creates with a published password (``ensure_demo_user`` for ``make demo``).
KNOWN_PASSWORDS = {DEMO_USERNAME: "demo"}


def known_password_accounts() -> list[str]:
    """Names of the active accounts that still have the password the project publishes for them.

    Cheap enough for start-up: one indexed query by name, and a password hash checked only for an account found.
    """
    users = get_user_model().objects.filter(username__in=list(KNOWN_PASSWORDS), is_active=True)
    return sorted(user.username for user in users if user.check_password(KNOWN_PASSWORDS[user.username]))


def refuse_known_passwords() -> None:
    """The web server's start-up guard (``cryptoproject/asgi.py``, ``wsgi.py``): in production, raise
    ``ImproperlyConfigured`` while an account with a published password can sign in (the admin included).

    ``check --deploy`` reports the demo account too (``dashboard.E001``), but nothing makes a deployment run it.
    A database that does not answer yet is no reason to refuse: the pages degrade, and the guard runs at every start.
    """
    if settings.DEBUG:
        return
    try:
        names = known_password_accounts()
    except DatabaseError as exc:
        logger.warning("start-up guard: cannot look for accounts with a published password (%s)", type(exc).__name__)
        return
    if names:
        raise ImproperlyConfigured(
            f"refusing to start: the account(s) {', '.join(names)} still have the password that `make demo` "
            "publishes; delete them or set a new password (manage.py changepassword), or use a fresh database"
        )


@register(Tags.security, deploy=True)
def demo_user_absent(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Fail while the ``demo``/``demo`` account of ``make demo`` exists: a database first used for the demo and
    then switched to production would keep a superuser whose password is in the README."""
    try:
        exists = get_user_model().objects.filter(username=DEMO_USERNAME).exists()
    except DatabaseError:
        # No database to look at (an image build, a CI lint job): the check runs again at deploy.
        return []
    if not exists:
        return []
    return [
        Error(
            "the demo account 'demo' exists; it was created by `make demo` and its password is public",
            hint='Delete it (manage.py shell -c "from django.contrib.auth.models import User; '
            "User.objects.filter(username='demo').delete()\") or use a fresh database for production.",
            id="dashboard.E001",
        )
    ]


@register(Tags.security, deploy=True)
def login_required_in_production(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Fail when the pages, the API and the sockets need no login and nobody said that was meant: the start-up
    guard refuses it in production already, and this says it to ``check --deploy`` whatever ``DJANGO_DEBUG`` is."""
    if settings.DASHBOARD_LOGIN_REQUIRED:
        return []
    if settings.DASHBOARD_PUBLIC_READONLY:
        return [
            Info(
                "the dashboard is public (DASHBOARD_PUBLIC_READONLY=true): anyone can read the pages, the API and "
                "the sockets; starting a backtest needs a login",
                id="dashboard.I002",
            )
        ]
    return [
        Error(
            "DASHBOARD_LOGIN_REQUIRED=false: the pages, the API and the WebSockets are open to everyone",
            hint="Set DASHBOARD_LOGIN_REQUIRED=true (the production default), or DASHBOARD_PUBLIC_READONLY=true if a "
            "public read-only dashboard is what you want.",
            id="dashboard.E002",
        )
    ]
