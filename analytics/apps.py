"""The analytics app.

A Celery worker that consumes the analytics queue queues one ``reconcile_recent_candles`` when it starts. With the
Redis broker a message is popped (BRPOP) before the worker records it as unacknowledged, and kombu's restore sweep
is guarded by a mutex that lives 300 s: a worker SIGKILLed between the two, or while it holds the mutex, can lose
an ``update_candles`` of its last moments or delay it past any visibility timeout. The trades of that window are
already stored (tasks are dispatched after the commit), so recomputing each market's recent candles at the next
start makes them right again (seen in the chaos suite's kill-worker scenario: one candle of five wrong).
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig

logger = logging.getLogger(__name__)


def reconcile_on_worker_start(sender: Any = None, **_kwargs: Any) -> bool:
    """``worker_ready`` receiver: queue the candle reconcile when the worker consumes the analytics queue."""
    from cryptoproject.queues import CeleryQueue

    queues = {queue.name for queue in getattr(getattr(sender, "task_consumer", None), "queues", None) or ()}
    if CeleryQueue.ANALYTICS.value not in queues:
        return False
    from analytics.tasks import reconcile_recent_candles

    reconcile_recent_candles.apply_async()
    logger.info("recent candles reconcile queued at worker start")
    return True


class AnalyticsConfig(AppConfig):
    """App configuration for ``analytics``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "analytics"
    verbose_name = "Analytics"

    def ready(self) -> None:
        """Connect the worker-start reconcile."""
        from celery.signals import worker_ready

        worker_ready.connect(reconcile_on_worker_start, weak=False, dispatch_uid="analytics-reconcile-candles")
