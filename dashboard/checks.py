"""Deploy-time system checks (``manage.py check --deploy``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.checks import CheckMessage, Error, Info, Tags, register
from django.db import DatabaseError

DEMO_USERNAME = "demo"


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
