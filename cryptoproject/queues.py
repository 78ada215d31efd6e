"""The Celery queues: one enum for the app's declarations, the task routes, the Procfiles' workers and the health page.

``analytics`` takes candles, indicators and stats; ``backtest`` the backtests users start, with a worker of its own,
so a queue of long runs never delays a candle update; ``alerts`` whale detection, so a candle backlog never delays
it; ``notify`` the outbox sender (notifications), so a slow webhook receiver never delays anything else; ``ml``
training and inference, so a retraining never holds up a candle update; ``default`` anything unrouted.
"""

from __future__ import annotations

from enum import StrEnum


class CeleryQueue(StrEnum):
    """A queue's name (a ``str``: usable wherever Celery or Redis takes one)."""

    DEFAULT = "default"
    ANALYTICS = "analytics"
    ALERTS = "alerts"
    ML = "ml"
    BACKTEST = "backtest"
    NOTIFY = "notify"
