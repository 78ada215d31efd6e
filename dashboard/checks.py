"""Deploy-time system checks (``manage.py check --deploy``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.checks import CheckMessage, Error, Tags, register
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
