"""``manage.py create_topics``: create the project's Kafka topics when missing (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from cryptoproject.kafka import ensure_topics, project_topics
from cryptoproject.preflight import require_kafka


class Command(BaseCommand):
    help = "Create market.trades (partitioned by exchange:symbol) and market.trades.dlq when missing."

    def handle(self, *args: Any, **options: Any) -> None:
        require_kafka()
        created = ensure_topics()
        for spec in project_topics():
            state = "created" if spec.name in created else "exists"
            self.stdout.write(
                f"{spec.name}: {state} ({spec.partitions} partition{'' if spec.partitions == 1 else 's'})"
            )
