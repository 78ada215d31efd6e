"""Start-up checks for long-running commands: fail fast, naming the setting and the address."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection
from django.db.utils import OperationalError

from cryptoproject.kafka import BrokerUnavailableError, wait_for_broker
from cryptoproject.security import redact_text


def require_database() -> None:
    """Raise ``CommandError`` naming ``DATABASE_URL``'s host when PostgreSQL does not answer."""
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        db = settings.DATABASES["default"]
        address = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db.get('NAME')}"
        text = redact_text(str(exc)).strip()
        detail = text.splitlines()[0] if text else type(exc).__name__
        raise CommandError(f"PostgreSQL is unreachable at DATABASE_URL ({address}): {detail}") from exc


def require_kafka(timeout: float = 10.0) -> None:
    """Raise ``CommandError`` naming ``KAFKA_BOOTSTRAP_SERVERS`` when no broker answers within ``timeout``."""
    try:
        wait_for_broker(timeout)
    except BrokerUnavailableError as exc:
        raise CommandError(str(exc)) from exc
