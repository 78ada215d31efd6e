"""The two kinds of failure the consumer's loop tells apart while delivering a batch (besides bad records).

- :data:`TRANSIENT_ERRORS`: PostgreSQL, the Celery broker, Redis or Kafka (the dead-letter topic included) failed;
  they may pass on retry, so the batch is kept, the partitions paused and nothing committed meanwhile.
- :data:`REBALANCE_ERRORS`: an offset commit refused because the group is rebalancing; the batch is durable, only
  its commit waits (:class:`analytics.consumer.commit.Commit`).
"""

from __future__ import annotations

import redis
from django.db import InterfaceError, OperationalError
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kombu.exceptions import OperationalError as BrokerOperationalError

from analytics.consumer.dead_letters import DeadLetterDeliveryError

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    BrokerOperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
    KafkaError,
    DeadLetterDeliveryError,
)

REBALANCE_ERRORS: tuple[type[BaseException], ...] = (
    RebalanceInProgressError,
    CommitFailedError,
    IllegalGenerationError,
    UnknownMemberIdError,
)
