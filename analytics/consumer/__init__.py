"""The ``market.trades`` consumer as small steps, in the shape of Sentry's arroyo, wired by one loop.

=================  ==========================================================================================
module             step
=================  ==========================================================================================
``decode``         Kafka records of a partition -> trade records, or dead letters with their reason (counted by
                   the invalid-message limit, :mod:`analytics.dlq`)
``batch``          records gather until ``batch_size`` or ``batch_ms``; trimmed when a rebalance takes partitions
``store``          one PostgreSQL transaction, idempotent; refused rows become dead letters; returns what is durable
``fanout``         the live trade tape, then the Celery tasks per symbol window
``dead_letters``   letters sent to the dead-letter topic and acknowledged before anything is committed
``commit``         the next offsets, only after the above; refused during a rebalance, remembered and retried
``delivery``       store -> fan-out -> dead letters -> commit, in that order
``loop``           :class:`TradeConsumer`: polling, pause/resume with backoff, rebalance callbacks, shutdown,
                   lag, metrics (``metrics``) and the watchdog; the ``backstop`` thread for a stuck call
=================  ==========================================================================================

Every step but the loop takes its collaborators (a ``commit(offsets)`` callable, a storer, a dispatcher, a producer)
as arguments, so each is tested without a broker (``tests/analytics/test_consumer_steps.py``).
"""

from __future__ import annotations

from analytics.consumer.batch import Batch
from analytics.consumer.config import ConsumerConfig
from analytics.consumer.loop import TradeConsumer
from analytics.dlq import InvalidMessageLimitError

#: The name the command and older callers use for :class:`analytics.dlq.InvalidMessageLimitError`.
InvalidRatioError = InvalidMessageLimitError

__all__ = ["Batch", "ConsumerConfig", "InvalidRatioError", "TradeConsumer"]
