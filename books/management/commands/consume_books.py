"""``manage.py consume_books``: run one :class:`books.consumer.BooksConsumer` (several processes share the
partitions of the group). SIGTERM/SIGINT finish the current batch, commit and exit 0."""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError

from books import partitions
from books.consumer import BooksConsumer, BooksConsumerConfig
from books.live import BookPusher
from cryptoproject.arguments import positive_float, positive_int
from cryptoproject.preflight import require_database, require_kafka, require_redis

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    """Consume until stopped, ``--max-records`` or ``--idle-exit``."""

    help = "Consume market.books, keep one L2 book per market and store its 1 s metrics and top-N snapshots."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the batching options and the optional exit conditions."""
        parser.add_argument("--batch-size", type=positive_int, default=2000, help="messages per batch (2000)")
        parser.add_argument("--batch-ms", type=positive_int, default=500, help="max batch age in ms (500)")
        parser.add_argument("--max-records", type=positive_int, default=None, help="exit after N messages")
        parser.add_argument(
            "--idle-exit",
            type=positive_float,
            default=None,
            help="exit after S seconds without messages, once partitions are assigned",
        )
        parser.add_argument(
            "--no-push",
            action="store_true",
            help="store only: no live push of the books to the market pages (BOOK_PUSH_MAX_HZ a second otherwise)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Check PostgreSQL, Kafka and Redis, make today's partitions, then consume."""
        require_database()
        require_kafka()
        require_redis(["REDIS_URL"])
        try:
            partitions.maintain()
        except DatabaseError as exc:
            logger.warning("book partitions not maintained at start", extra={"error": str(exc)})
        config = BooksConsumerConfig.from_settings(
            batch_size=options["batch_size"],
            batch_ms=options["batch_ms"],
            max_records=options["max_records"],
            idle_exit_s=options["idle_exit"],
        )
        consumer = BooksConsumer(config, pusher=None if options["no_push"] else BookPusher())

        def _stop(signum: int, frame: FrameType | None) -> None:
            consumer.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        consumer.run()
