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
        raise CommandError(_unreachable(exc)) from exc


def database_down(exc: BaseException) -> str | None:
    """The one-line message for a command that failed with ``exc`` because PostgreSQL does not answer, or None when
    ``exc`` is something else (PostgreSQL answers now: the error was not about reaching it).

    ``manage.py`` prints it instead of a traceback, whichever command met the closed database.
    """
    if not isinstance(exc, OperationalError):
        return None
    try:
        connection.close()
        connection.ensure_connection()
    except OperationalError as now:
        return _unreachable(now)
    return None


def _unreachable(exc: OperationalError) -> str:
    db = settings.DATABASES["default"]
    address = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db.get('NAME')}"
    text = redact_text(str(exc)).strip()
    detail = text.splitlines()[0] if text else type(exc).__name__
    return f"PostgreSQL is unreachable at DATABASE_URL ({address}): {detail}"


def require_kafka(timeout: float = 10.0) -> None:
    """Raise ``CommandError`` naming ``KAFKA_BOOTSTRAP_SERVERS`` when no broker answers within ``timeout``."""
    try:
        wait_for_broker(timeout)
    except BrokerUnavailableError as exc:
        raise CommandError(str(exc)) from exc
