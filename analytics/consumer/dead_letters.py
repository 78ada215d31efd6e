"""The consumer's dead-letter step: refused records become bounded letters, sent to the dead-letter topic, and the
batch goes on only once the topic acknowledged every one.

:func:`letter_for` turns a refused Kafka record into a letter (a prefix of its value and its full length, its
partition, offset and reason); :class:`DeadLetterSender` sends a batch's letters and raises
:class:`DeadLetterDeliveryError` (transient: the batch is retried, nothing committed) when one is missing. A letter
the broker refuses for its size is sent again with ``raw`` cut to :data:`DLQ_RAW_FALLBACK_BYTES`; one already
acknowledged is never sent again by a retried batch. The invalid-message limit is :mod:`analytics.dlq`.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

from kafka import KafkaProducer
from kafka.errors import MessageSizeTooLargeError

from analytics.consumer.config import ConsumerConfig
from cryptoproject.kafka import client_config
from ingest.records import DeadLetter, bounded_raw

# A dead-letter key is the refused record's key, which a hostile producer can make as long as the message.
DLQ_KEY_MAX_BYTES = 256
# What is left of ``raw`` when the broker still refuses a dead letter's size (a broker limit below 1 MB).
DLQ_RAW_FALLBACK_BYTES = 1024

#: a letter with the key it is sent under
Letter = tuple[bytes | None, DeadLetter]
#: (partition, offset) of the record a letter is about: how a retried batch recognises it
LetterId = tuple[int | None, int | None]


def dlq_producer(config: ConsumerConfig) -> KafkaProducer:
    """The dead-letter producer: every wait bounded by ``config.dlq_max_block_ms``, acknowledged by all replicas."""
    return KafkaProducer(
        **client_config(),
        acks="all",
        linger_ms=5,
        max_block_ms=config.dlq_max_block_ms,
        # kafka-python's idempotent producer turns ONE refused batch (a letter over the topic's size limit) into
        # a fatal state that fails every later send with the same error: the partition would stay paused
        # forever. Dead letters are at least once anyway (a retried batch may resend one).
        enable_idempotence=False,
        client_id=f"consume_trades-dlq-{os.getpid()}",
    )


class DeadLetterDeliveryError(RuntimeError):
    """The dead-letter topic did not acknowledge a letter: transient, the batch is retried (never skipped)."""


def bounded_key(key: bytes | None) -> bytes | None:
    """A refused record's key, cut to :data:`DLQ_KEY_MAX_BYTES`."""
    return key[:DLQ_KEY_MAX_BYTES] if key is not None else None


def letter_for(message: Any, reason: str, source: str, raw_max_bytes: int) -> DeadLetter:
    """The dead letter of a Kafka ``message`` refused for ``reason``: a prefix of its value and its full length."""
    raw, length = bounded_raw(message.value, raw_max_bytes)
    return DeadLetter(
        source=source,
        reason=reason,
        raw=raw,
        received_at=int(time.time() * 1000),
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        raw_length=length,
        raw_truncated=length > raw_max_bytes,
    )


def shrunk(letter: DeadLetter) -> DeadLetter:
    """``letter`` with ``raw`` cut to :data:`DLQ_RAW_FALLBACK_BYTES` (for a broker whose size limit is lower)."""
    raw, _ = bounded_raw(letter.raw, DLQ_RAW_FALLBACK_BYTES)
    return replace(letter, raw=raw, raw_truncated=letter.raw_truncated or len(raw) < len(letter.raw))


class DeadLetterSender:
    """Sends letters to the dead-letter topic and waits for the acknowledgements."""

    def __init__(self, producer: KafkaProducer, topic: str, flush_timeout_s: float) -> None:
        self.producer, self.topic, self.flush_timeout_s = producer, topic, flush_timeout_s

    def send(
        self,
        letters: list[Letter],
        acked: set[LetterId],
        oversized: set[LetterId],
    ) -> None:
        """Send the letters not in ``acked`` yet and wait for the acknowledgements.

        Raises :class:`DeadLetterDeliveryError` (transient: the whole batch is retried with backoff, nothing is
        committed) when any is missing. Acknowledged letters are added to ``acked`` so the retry does not send
        them twice; letters the broker refused as too large to ``oversized`` so the retry sends less.
        """
        sent = []
        for key, letter in letters:
            ident = (letter.partition, letter.offset)
            if ident in acked:
                continue
            if ident in oversized:
                letter = shrunk(letter)
            try:
                future = self.producer.send(self.topic, key=key, value=letter.encode())
            except MessageSizeTooLargeError:
                # Over the producer's max_request_size: cut raw further and send that (it always fits).
                future = self.producer.send(self.topic, key=key, value=shrunk(letter).encode())
            sent.append((ident, future))
        if not sent:
            return
        self.producer.flush(timeout=self.flush_timeout_s)
        missing = []
        for ident, future in sent:
            if future.is_done and future.succeeded():
                acked.add(ident)
                continue
            if isinstance(future.exception, MessageSizeTooLargeError):
                oversized.add(ident)  # the broker's own limit is lower: the retry sends less
            missing.append(future.exception)
        if missing:
            raise DeadLetterDeliveryError(
                f"dead-letter topic {self.topic} did not acknowledge {len(missing)} of {len(sent)} letters: "
                f"{missing[0] or 'timed out'}"
            )
