"""``manage.py create_topics``: create the project's Kafka topics when missing (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from cryptoproject.kafka import ensure_topics, project_topics
from cryptoproject.preflight import require_kafka


class Command(BaseCommand):
    """Create the trades and DLQ topics; topics that exist are left as they are."""

    help = "Create market.trades (partitioned by exchange:symbol) and market.trades.dlq when missing."

    def handle(self, *args: Any, **options: Any) -> None:
        """Print each topic as ``created`` or ``exists`` with its partition count."""
        require_kafka()
        created = ensure_topics()
        for spec in project_topics():
            state = "created" if spec.name in created else "exists"
            self.stdout.write(
                f"{spec.name}: {state} ({spec.partitions} partition{'' if spec.partitions == 1 else 's'})"
            )
