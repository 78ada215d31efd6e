"""``manage.py check_stack``: verify PostgreSQL, Kafka and Redis answer, naming whichever does not."""

from __future__ import annotations

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
        """Print ``ok`` per server; a server that does not answer in time is a CommandError naming its setting."""
        require_database()
        self.stdout.write("postgresql: ok")
        require_kafka(options["timeout"])
        self.stdout.write("kafka: ok")
        try:
            redis_client(timeout=options["timeout"]).ping()
        except redis.RedisError as exc:
            url = redact_url(settings.REDIS_URL)
            raise CommandError(f"Redis is unreachable at REDIS_URL={url}: {redact_text(str(exc))}") from exc
        self.stdout.write("redis: ok")
