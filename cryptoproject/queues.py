"""The Celery queues: one enum for the app's declarations, the task routes, the Procfiles' workers and the health page.

``analytics`` takes candles, indicators, stats and backtests; ``alerts`` whale detection and delivery, so a candle
backlog never delays an alert; ``ml`` training and inference, so a retraining never holds up a candle update;
``notify`` the outbox sender (notifications), so a
slow webhook receiver never delays an alert's evaluation; ``default`` anything unrouted.
"""

from __future__ import annotations

from enum import StrEnum


class CeleryQueue(StrEnum):
    """A queue's name (a ``str``: usable wherever Celery or Redis takes one)."""

    DEFAULT = "default"
    ANALYTICS = "analytics"
    ALERTS = "alerts"
    ML = "ml"
    NOTIFY = "notify"
