"""The consumer's decode step: Kafka records of one partition -> trade records, or dead letters with their reason.

Whatever decoding raises, the record becomes a dead letter (an unexpected exception's type is in the reason and
counted in ``decode_errors``) and the worker goes on. A ``received_at`` ahead of this clock by more than the allowed
skew is refused too: it would let a forged record carry a trade time from the future. Every record, valid or not,
is counted by the per-partition invalid-message limit (:mod:`analytics.dlq`), which raises
:class:`analytics.dlq.InvalidMessageLimitError` when a partition carries too many bad ones: the batch is then never
delivered, nothing is committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from analytics.consumer.batch import Decoded
from analytics.consumer.dead_letters import bounded_key, letter_for
from analytics.consumer.metrics import ConsumerMetrics
from analytics.dlq import InvalidMessageLimiter
from ingest.records import InvalidRecordError, TradeRecord, decode

logger = logging.getLogger(__name__)


class Message(Protocol):
    """What the step reads of a Kafka record (kafka-python's ``ConsumerRecord`` has it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Decode:
    """Decodes the records of one partition; ``decoder`` is :func:`ingest.records.decode` unless a test passes one."""

    def __init__(
        self,
        source: str,
        limiter: InvalidMessageLimiter,
        metrics: ConsumerMetrics,
        skew_ms: int,
        raw_max_bytes: int,
        decoder: Callable[[bytes | None, int | None], TradeRecord] = decode,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.source, self.limiter, self.metrics = source, limiter, metrics
        self.skew_ms, self.raw_max_bytes = skew_ms, raw_max_bytes
        self.decoder, self.clock_ms = decoder, clock_ms

    def __call__(self, partition: int, messages: Sequence[Message]) -> Decoded:
        """The records of ``messages`` (one partition, in offset order, at least one), and the next offset."""
        out = Decoded(next_offset=messages[-1].offset + 1)
        limiter, skew = self.limiter, self.skew_ms
        horizon = self.clock_ms() + skew
        valid_run = 0
        for message in messages:
            record, reason = self._decode(message, skew, horizon)
            if record is not None:
                out.records.append(record)
                out.origins.append((message.partition, message.offset))
                valid_run += 1
                continue
            if valid_run:
                limiter.valid(message.partition, valid_run)
                valid_run = 0
            letter = letter_for(message, reason, self.source, self.raw_max_bytes)
            out.dead.append((bounded_key(message.key), letter))
            limiter.invalid(message.partition, message.offset, reason)
        if valid_run:
            limiter.valid(partition, valid_run)
        self.metrics.consumed += len(messages)
        return out

    def _decode(self, message: Message, skew: int, horizon: int) -> tuple[TradeRecord | None, str]:
        try:
            record = self.decoder(message.value, skew)
        except InvalidRecordError as exc:
            return None, exc.reason
        except Exception as exc:  # whatever decoding raises, the record must not stop the worker
            self.metrics.decode_errors += 1
            logger.exception("record decoding raised unexpectedly", extra={"offset": message.offset})
            return None, f"unexpected {type(exc).__name__} while decoding: {_safe_text(exc)}"
        if record.received_at > horizon:
            return None, f"received_at {record.received_at} is ahead of the consumer's clock by more than {skew} ms"
        return record, ""


def _safe_text(exc: BaseException) -> str:
    try:
        return str(exc)[:200]
    except Exception:  # noqa: BLE001 - an exception whose text cannot be built still gets a reason
        return "<no message>"
