"""``manage.py ensure_demo_user``: the demo's superuser ``demo``/``demo``; refuses outside DEBUG."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    """The demo/demo superuser for local runs; refused unless ``DJANGO_DEBUG`` is true (idempotent)."""

    help = "Create or reset the local demo superuser (demo/demo). Only with DJANGO_DEBUG=true."

    def handle(self, *args: Any, **options: Any) -> None:
        """Create the user or reset its password and rights; a CommandError when DEBUG is off."""
        if not settings.DEBUG:
            raise CommandError("ensure_demo_user only runs with DJANGO_DEBUG=true; use createsuperuser instead.")
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(username="demo", defaults={"email": "demo@localhost"})
        user.is_staff = user.is_superuser = True
        user.set_password("demo")
        user.save()
        self.stdout.write(f"demo user {'created' if created else 'ready'}")
