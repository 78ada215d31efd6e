"""``manage.py check_stack``: verify PostgreSQL, Kafka and Redis answer, naming whichever does not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cryptoproject.preflight import require_database, require_kafka, require_redis


class Command(BaseCommand):
    """Check PostgreSQL, Kafka and Redis in turn; the first that does not answer is a CommandError, redacted."""

    help = (
        "Check that PostgreSQL (DATABASE_URL), Kafka (KAFKA_BOOTSTRAP_SERVERS) and Redis (REDIS_URL and the other "
        "Redis settings) answer and accept this process's TLS settings and credentials."
    )

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
    # Every Redis setting that names another server or database (Celery's broker, the channel layer, the cache).
    require_redis(
        ["REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CHANNEL_LAYER_URL", "CACHE_URL"],
        timeout=timeout,
        outage_is_fatal=True,
    )
