"""Start-up checks for long-running commands: fail fast, naming the setting and the address.

A server that does not answer is an outage (PostgreSQL and Kafka are required at start; Redis outages are ridden
out); a server that answers but refuses the connection's TLS or credentials is a setting to fix, which stops every
command at start with one line naming it (:mod:`cryptoproject.connection_problems`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis
from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection
from django.db.utils import OperationalError

from cryptoproject.connection_problems import postgres_problem, redis_problem
from cryptoproject.kafka import BrokerUnavailableError, wait_for_broker
from cryptoproject.redis_clients import redis_client
from cryptoproject.security import redact_text, redact_url, url_host

logger = logging.getLogger(__name__)


def require_database() -> None:
    """Raise ``CommandError`` naming ``DATABASE_URL``'s host when PostgreSQL does not answer."""
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        raise CommandError(_unreachable(exc)) from exc


def database_misconfigured() -> str | None:
    """The line naming the part of ``DATABASE_URL`` PostgreSQL refuses (TLS, password, host name), or None when it
    connects or is merely down (an outage the caller may ride out)."""
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        return _unreachable(exc) if postgres_problem(str(exc)) else None
    return None


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
    problem = postgres_problem(text)
    if problem:
        return f"{problem}: PostgreSQL at {address} refused the connection: {detail}"
    return f"PostgreSQL is unreachable at DATABASE_URL ({address}): {detail}"


def require_kafka(timeout: float = 10.0) -> None:
    """Raise ``CommandError`` naming ``KAFKA_BOOTSTRAP_SERVERS`` when no broker answers within ``timeout``, or the
    Kafka setting the broker refuses (``KAFKA_SSL_CAFILE``, ``KAFKA_SASL_PASSWORD``, ...) as soon as it does."""
    try:
        wait_for_broker(timeout)
    except BrokerUnavailableError as exc:
        raise CommandError(str(exc)) from exc


def redis_urls(names: Iterable[str]) -> list[tuple[str, str]]:
    """(setting, URL) for each named Redis setting that is set to a Redis URL, each URL once (first name wins)."""
    values = {
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND or "",
        "CHANNEL_LAYER_URL": settings.CHANNEL_LAYER_URL,
        "CACHE_URL": settings.CACHES["default"]["LOCATION"],
    }
    seen: set[str] = set()
    out = []
    for name in names:
        url = str(values[name])
        if url.startswith(("redis://", "rediss://", "unix://")) and url not in seen:
            seen.add(url)
            out.append((name, url))
    return out


def require_redis(names: Iterable[str], *, timeout: float = 2.0, outage_is_fatal: bool = False) -> None:
    """Ping the Redis of each named setting; raise ``CommandError`` naming the setting when Redis refuses its TLS or
    password (and, with ``outage_is_fatal``, when it does not answer; otherwise that is logged and ridden out)."""
    for name, url in redis_urls(names):
        client = redis_client(url, timeout=timeout)
        try:
            client.ping()
        except redis.RedisError as exc:
            problem = redis_problem(exc, setting=name, host=url_host(url))
            if problem:
                raise CommandError(problem) from exc
            if outage_is_fatal:
                raise CommandError(
                    f"Redis is unreachable at {name}={redact_url(url)}: {redact_text(str(exc))}"
                ) from exc
            logger.warning("Redis does not answer at start", extra={"setting": name, "error": redact_text(str(exc))})
        finally:
            client.close()


def worker_misconfiguration() -> str | None:
    """For a Celery worker at start: the line naming the Redis setting (broker, results, channel layer) or the part
    of ``DATABASE_URL`` that its server refuses, or None. Outages are not reported: the worker waits them out."""
    try:
        require_redis(["CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CHANNEL_LAYER_URL", "REDIS_URL"])
    except CommandError as exc:
        return str(exc)
    return database_misconfigured()
