"""``manage.py consume_trades``: run one :class:`analytics.consumer.TradeConsumer` (several processes share the
partitions of the consumer group). SIGTERM/SIGINT finish the current batch, commit and exit 0. The invalid-message
limit and the stall watchdog (``CONSUMER_*`` settings) end it non-zero without committing, for its supervisor to
restart it."""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from analytics import partitions
from analytics.consumer import ConsumerConfig, TradeConsumer
from analytics.dlq import InvalidMessageLimitError
from analytics.watchdog import StalledError
from cryptoproject.arguments import positive_float, positive_int
from cryptoproject.preflight import require_database, require_kafka, require_redis

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    """Consume until stopped, ``--max-records`` or ``--idle-exit``; a stall or bad-message limit is a CommandError."""

    help = "Consume market.trades in batches and store them in PostgreSQL exactly once."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the batching options and the optional exit conditions (``--max-records``, ``--idle-exit``, stall)."""
        parser.add_argument("--batch-size", type=positive_int, default=5000, help="records per batch (5000)")
        parser.add_argument("--batch-ms", type=positive_int, default=200, help="max batch age in ms (200)")
        parser.add_argument("--max-records", type=positive_int, default=None, help="exit after N records")
        parser.add_argument("--idle-exit", type=positive_float, default=None, help="exit after S idle seconds")
        parser.add_argument(
            "--stall-timeout",
            type=positive_float,
            default=None,
            help="exit non-zero after S seconds without progress (default: CONSUMER_STALL_TIMEOUT_S)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Check PostgreSQL and Kafka, create today's partitions, then consume; SIGTERM/SIGINT commit and exit 0."""
        require_database()
        require_kafka()
        # Tasks, live pushes and metrics: a refused TLS or password stops it here, an outage is ridden out.
        require_redis(["CELERY_BROKER_URL", "CHANNEL_LAYER_URL", "REDIS_URL"])
        try:
            partitions.maintain()  # today's partitions even where no beat runs (trades would be in the default one)
        except DatabaseError as exc:
            logger.warning("trade partitions not maintained at start", extra={"error": str(exc)})
        overrides: dict[str, Any] = {"hard_exit_on_hang": True}
        if options["stall_timeout"] is not None:
            overrides["stall_timeout_s"] = options["stall_timeout"]
        config = ConsumerConfig.from_settings(
            batch_size=options["batch_size"],
            batch_ms=options["batch_ms"],
            max_records=options["max_records"],
            idle_exit_s=options["idle_exit"],
            **overrides,
        )
        consumer = TradeConsumer(config)

        def _stop(signum: int, frame: FrameType | None) -> None:
            consumer.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        try:
            consumer.run()
        except (InvalidMessageLimitError, StalledError) as exc:
            raise CommandError(str(exc)) from exc
