"""``manage.py check_stack``: verify PostgreSQL, Kafka and Redis answer, naming whichever does not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cryptoproject.preflight import require_database, require_kafka
from cryptoproject.redis_clients import redis_client
from cryptoproject.security import redact_text, redact_url


class Command(BaseCommand):
    """Check PostgreSQL, Kafka and Redis in turn; the first that does not answer is a CommandError, redacted."""

    help = "Check that PostgreSQL (DATABASE_URL), Kafka (KAFKA_BOOTSTRAP_SERVERS) and Redis (REDIS_URL) answer."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare ``--timeout``, the seconds to wait for each server."""
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each server")

    def handle(self, *args: Any, **options: Any) -> None:
        """Check all three servers; print ``ok`` or the problem for each, and fail naming every one that is down."""
        # Every server is checked, whatever the first one said: one run names all that are down.
        timeout = options["timeout"]
        checks: list[tuple[str, Callable[[], None]]] = [
            ("postgresql", require_database),
            ("kafka", lambda: require_kafka(timeout)),
            ("redis", lambda: _require_redis(timeout)),
        ]
        down = [name for name, check in checks if not self._check(name, check)]
        if down:
            raise CommandError(f"{len(down)} of {len(checks)} servers do not answer: {', '.join(down)} (see above)")

    def _check(self, name: str, check: Callable[[], None]) -> bool:
        """Run one check: print ``name: ok``, or the one-line problem on stderr and return False."""
        try:
            check()
        except CommandError as exc:
            self.stderr.write(f"{name}: {exc}")
            return False
        self.stdout.write(f"{name}: ok")
        return True


def _require_redis(timeout: float) -> None:
    try:
        redis_client(timeout=timeout).ping()
    except redis.RedisError as exc:
        url = redact_url(settings.REDIS_URL)
        raise CommandError(f"Redis is unreachable at REDIS_URL={url}: {redact_text(str(exc))}") from exc
