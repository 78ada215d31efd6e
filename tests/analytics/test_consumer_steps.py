"""Each step of the trades consumer on its own, without a broker: hand-built records and recording collaborators
(the broker-backed pipeline is test_consumer.py and test_consumer_reliability.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError

from analytics.consumer.batch import Batch, BatchPolicy, Decoded
from analytics.consumer.commit import Commit
from analytics.consumer.dead_letters import DeadLetterDeliveryError, Letter, LetterId
from analytics.consumer.decode import Decode
from analytics.consumer.delivery import Delivery
from analytics.consumer.fanout import FanOut
from analytics.consumer.metrics import ConsumerMetrics, SnapshotPublisher
from analytics.consumer.store import Store, Stored
from analytics.dlq import DlqLimit, InvalidMessageLimiter, InvalidMessageLimitError
from analytics.live import TapePublisher
from analytics.storage import StoreResult
from analytics.windows import SymbolWindow
from cryptoproject.kafka_offsets import (
    CONSUMER_METRICS_PREFIX,
    consumer_metrics_key,
    ingest_metrics_key,
    partition_lag,
)
from cryptoproject.redis_clients import redis_client
from ingest.records import DeadLetter, TradeRecord, decode

T0 = 1_723_161_255_342
TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


def rec(trade_id: int, symbol: str = "BTCUSDT", received_at: int = T0) -> TradeRecord:
    return TradeRecord("binance", symbol, trade_id, "1.5", "2", False, T0 + trade_id, T0 + trade_id, received_at)


@dataclass
class Msg:
    """A Kafka record as the decode step reads it."""

    offset: int
    value: bytes | None
    partition: int = 0
    topic: str = "t"
    key: bytes | None = b"binance:BTCUSDT"


def letter(partition: int, offset: int, reason: str = "bad") -> Letter:
    return (b"k", DeadLetter("consumer:g", reason, "raw", T0, "t", partition, offset, 3, False))


# --------------------------------------------------------------------------------------------- decode
def decode_step(limit: DlqLimit | None = None, **kwargs: Any) -> tuple[Decode, ConsumerMetrics]:
    metrics = ConsumerMetrics()
    limiter = InvalidMessageLimiter(limit or DlqLimit())
    step = Decode("consumer:g", limiter, metrics, skew_ms=1000, raw_max_bytes=256, clock_ms=lambda: T0, **kwargs)
    return step, metrics


def test_decode_keeps_valid_records_with_their_origin_and_letters_the_bad_ones_with_a_reason():
    step, metrics = decode_step()
    ahead = rec(3, received_at=T0 + 5000)  # ahead of the consumer's clock (T0) by more than the 1 s skew
    out = step(0, [Msg(10, rec(1).encode()), Msg(11, b"{not json"), Msg(12, ahead.encode()), Msg(13, rec(2).encode())])
    assert out.records == [rec(1), rec(2)]
    assert out.origins == [(0, 10), (0, 13)]
    assert out.next_offset == 14
    assert out.consumed == 4
    reasons = {dead.offset: dead.reason for _, dead in out.dead}
    assert reasons[11].startswith("malformed JSON")
    assert reasons[12] == f"received_at {T0 + 5000} is ahead of the consumer's clock by more than 1000 ms"
    (key, first), _ = out.dead
    assert key == b"binance:BTCUSDT"
    assert (first.source, first.topic, first.partition, first.raw) == ("consumer:g", "t", 0, "{not json")
    assert metrics.consumed == 4
    assert metrics.decode_errors == 0
    assert step.limiter.counts(0) == (4, 2, 0)


def test_whatever_decoding_raises_becomes_a_letter_naming_the_exception(caplog):
    def decoder(value: bytes | None, max_skew_ms: int | None = None) -> TradeRecord:
        if value == b"boom":
            raise ZeroDivisionError("a bug in validation")
        return decode(value, max_skew_ms)

    step, metrics = decode_step(decoder=decoder)
    with caplog.at_level(logging.ERROR):
        out = step(0, [Msg(5, b"boom"), Msg(6, rec(1).encode())])
    ((_, dead),) = out.dead
    assert dead.reason == "unexpected ZeroDivisionError while decoding: a bug in validation"
    assert len(out.records) == 1
    assert metrics.decode_errors == 1
    assert "record decoding raised unexpectedly" in caplog.text


def test_decode_stops_the_worker_once_a_partition_exceeds_the_invalid_limit():
    step, _ = decode_step(DlqLimit(max_invalid_ratio=None, window=10, min_records=1, max_consecutive=2))
    step(1, [Msg(0, b"[]", partition=1), Msg(1, b"[]", partition=1)])
    with pytest.raises(InvalidMessageLimitError, match="3 consecutive invalid records on partition 1"):
        step(1, [Msg(2, b"[]", partition=1)])


# --------------------------------------------------------------------------------------------- batch
def test_a_batch_is_ready_when_full_or_due_and_the_poll_waits_until_it_is_due():
    policy = BatchPolicy(size=3, max_ms=250)
    batch = Batch()
    assert not batch
    assert not policy.ready(batch, 1000.0)
    assert policy.poll_timeout_ms(batch, 1000.0) == 250
    assert BatchPolicy(size=3, max_ms=5000).poll_timeout_ms(batch, 1000.0) == 500  # never longer without a batch
    batch.add(TP0, Decoded([rec(1)], [(0, 1)], [], 2), now=10.0)
    assert batch.started == 10.0
    assert policy.room(batch) == 2
    assert policy.poll_timeout_ms(batch, 10.125) == 125
    assert not policy.ready(batch, 10.125)
    assert policy.ready(batch, 10.25)  # due
    batch.add(TP1, Decoded([rec(2)], [(1, 4)], [letter(1, 5)], 6), now=10.1)
    assert batch.started == 10.0  # the first records started the clock
    assert batch.consumed == 3
    assert policy.room(batch) == 1  # a full batch still polls one record (progress), then is delivered
    assert policy.ready(batch, 10.0)  # full
    assert batch.offsets == {TP0: 2, TP1: 6}


def test_a_batch_without_a_lost_partition_drops_its_records_letters_offsets_and_acknowledgements():
    batch = Batch(started=5.0)
    batch.add(TP0, Decoded([rec(1), rec(2)], [(0, 1), (0, 2)], [letter(0, 3)], 4), now=5.0)
    batch.add(TP1, Decoded([rec(3)], [(1, 7)], [letter(1, 8)], 9), now=5.0)
    batch.dead_acked |= {(0, 3), (1, 8)}
    batch.dead_oversized.add((1, 8))
    kept = batch.without({1})
    assert kept.records == [rec(1), rec(2)]
    assert kept.origins == [(0, 1), (0, 2)]
    assert [d.offset for _, d in kept.dead] == [3]
    assert kept.offsets == {TP0: 4}
    assert kept.dead_acked == {(0, 3)}
    assert kept.dead_oversized == set()
    assert kept.started == 5.0
    assert batch.partitions() == {0, 1}
    assert not batch.without({0, 1})


# --------------------------------------------------------------------------------------------- store
def test_store_letters_the_records_postgresql_refuses_and_returns_what_is_durable():
    calls: list[tuple[list[TradeRecord], int | None]] = []

    def storer(records: Any, timeout: int | None) -> tuple[StoreResult, list[tuple[int, str]]]:
        calls.append((list(records), timeout))
        window = SymbolWindow("binance", "BTCUSDT", T0 + 1, T0 + 3, 2)
        return StoreResult(received=2, inserted=1, windows=[window]), [(1, "rejected by PostgreSQL: overflow")]

    step = Store("consumer:g", "market.trades", raw_max_bytes=20, statement_timeout_ms=900, storer=storer)
    records = [rec(1), rec(2), rec(3)]
    stored = step(records, [(0, 10), (2, 20), (0, 11)])
    assert calls == [(records, 900)]
    assert stored.result.inserted == 1
    assert stored.result.windows[0].count == 2
    ((key, dead),) = stored.refused
    assert key == rec(2).key
    assert (dead.reason, dead.topic, dead.partition, dead.offset) == (
        "rejected by PostgreSQL: overflow",
        "market.trades",
        2,
        20,
    )
    assert dead.source == "consumer:g"
    assert dead.raw == rec(2).encode().decode()[:20]
    assert dead.raw_length == len(rec(2).encode())
    assert stored.seconds >= 0
    # The refused record is not stored, so it is not kept for the fan-out either.
    assert stored.kept(records) == [rec(1), rec(3)]


# --------------------------------------------------------------------------------------------- fan-out
def test_fanout_pushes_the_tape_before_it_dispatches_and_dispatches_only_windows():
    events: list[str] = []

    def send(messages: Any) -> int:
        items = list(messages)
        events.extend(f"push {group}" for group, _ in items)
        return len(items)

    def dispatch(windows: list[SymbolWindow]) -> None:
        events.extend(f"task {w.symbol}" for w in windows)

    step = FanOut(dispatch, TapePublisher(interval=0.2, send=send))
    step([rec(1)], [SymbolWindow("binance", "BTCUSDT", T0, T0, 1)])
    assert events == ["push market.binance.btcusdt", "task BTCUSDT"]
    step([], [])
    assert events == ["push market.binance.btcusdt", "task BTCUSDT"]  # nothing stored: no task, no push


# --------------------------------------------------------------------------------------------- commit
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Broker:
    """A recording ``commit(offsets)``; raises ``error`` when set."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.error: BaseException | None = None

    def __call__(self, offsets: Any) -> None:
        if self.error is not None:
            raise self.error
        self.commits.append(dict(offsets))


def test_commit_remembers_offsets_a_rebalance_refused_and_sends_them_with_the_next():
    broker, clock, metrics = Broker(), Clock(), ConsumerMetrics()
    rebalancing = [True]
    progress: list[float] = []
    step = Commit(broker, lambda: rebalancing[0], metrics, on_committed=lambda: progress.append(clock()), clock=clock)
    step({TP0: 5, TP1: 3})
    assert broker.commits == []  # not even asked while the group rebalances
    assert step.pending == {TP0: 5, TP1: 3}
    assert metrics.commits_skipped == 1
    assert not step.leftovers_due()  # retried a second later
    rebalancing[0] = False
    broker.error = CommitFailedError("generation moved on")
    step({TP0: 9})
    assert step.pending == {TP0: 9, TP1: 3}  # newer offsets win
    assert metrics.commits_skipped == 2
    broker.error = None
    step({TP1: 4})
    assert broker.commits == [{TP0: 9, TP1: 4}]
    assert step.pending == {}
    assert progress == [clock.now]


def test_leftover_offsets_are_committed_when_due_and_those_of_lost_partitions_forgotten(caplog):
    broker, clock = Broker(), Clock()
    rebalancing = [True]
    step = Commit(broker, lambda: rebalancing[0], ConsumerMetrics(), clock=clock)
    step({TP0: 5, TP1: 3})
    step.retain({TP0})  # partition 1 went to another member: its next owner re-reads from the last commit
    rebalancing[0] = False
    clock.now += 1.0
    assert step.leftovers_due()
    broker.error = KafkaTimeoutError("broker slow")
    step.leftovers()  # a transient failure waits another second, never raises into the loop
    assert "offset commit failed, retrying" in caplog.text
    assert not step.leftovers_due()
    broker.error = None
    clock.now += 1.0
    step.leftovers()
    assert broker.commits == [{TP0: 5}]
    assert not step.leftovers_due()
    step({})  # nothing to commit: the broker is not asked
    assert broker.commits == [{TP0: 5}]


# --------------------------------------------------------------------------------------------- delivery
class Steps:
    """Recording stand-ins for the four delivery steps; ``fail`` names the one that raises."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.letters: list[Letter] = []
        self.committed: list[dict[TopicPartition, int]] = []
        self.fanned_out: list[TradeRecord] = []

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.fail == name:
            raise DeadLetterDeliveryError(f"{name} failed")

    def store(self, records: list[TradeRecord], origins: list[tuple[int, int]]) -> Stored:
        self._enter("store")
        return Stored(StoreResult(len(records), len(records)), [letter(0, 99, "refused")], 0.01, frozenset({0}))

    def fanout(self, records: list[TradeRecord], windows: list[SymbolWindow]) -> None:
        self._enter("fanout")
        self.fanned_out = records

    def dead_letters(self, letters: list[Letter], acked: set[LetterId], oversized: set[LetterId]) -> None:
        self._enter("dead_letters")
        self.letters = letters
        acked.update((d.partition, d.offset) for _, d in letters)

    def commit(self, offsets: Any) -> None:
        self._enter("commit")
        self.committed.append(dict(offsets))

    def delivery(self, metrics: ConsumerMetrics) -> Delivery:
        return Delivery(self.store, self.fanout, self.dead_letters, self.commit, metrics, clock=lambda: 12.0)


def sample_batch() -> Batch:
    batch = Batch()
    batch.add(TP0, Decoded([rec(1), rec(2)], [(0, 1), (0, 2)], [letter(0, 3)], 4), now=10.0)
    return batch


def test_delivery_stores_fans_out_sends_letters_then_commits_and_counts_the_batch():
    steps, metrics, batch = Steps(), ConsumerMetrics(), sample_batch()
    steps.delivery(metrics)(batch)
    assert steps.calls == ["store", "fanout", "dead_letters", "commit"]
    # The record the store refused (index 0) never reaches the live tape.
    assert steps.fanned_out == [rec(2)]
    assert [d.offset for _, d in steps.letters] == [3, 99]  # decode's letters and the store's
    assert steps.committed == [{TP0: 4}]
    assert batch.dead_acked == {(0, 3), (0, 99)}
    snapshot = metrics.snapshot()
    assert (snapshot["batches"], snapshot["stored"], snapshot["dead_lettered"]) == (1, 2, 2)
    assert snapshot["last_batch_latency_ms"] == 2000.0


@pytest.mark.parametrize("failing", ["store", "fanout", "dead_letters"])
def test_a_failing_step_stops_the_delivery_before_anything_is_committed(failing):
    steps, metrics = Steps(fail=failing), ConsumerMetrics()
    with pytest.raises(DeadLetterDeliveryError):
        steps.delivery(metrics)(sample_batch())
    assert "commit" not in steps.calls
    assert steps.calls[-1] == failing
    assert metrics.batches == 0
    assert metrics.dead_lettered == 0


# --------------------------------------------------------------------------------------------- offsets, keys
@pytest.mark.parametrize(
    ("committed", "begin", "end", "lag", "shown"),
    [
        (None, 4, 10, 6, None),  # never committed: the retained backlog, not the end
        (-1, 4, 10, 6, None),  # Kafka's "no offset"
        (7, 4, 10, 3, 7),
        (10, 4, 10, 0, 10),
        (12, 4, 10, 0, 12),  # never negative
        (None, 10, 10, 0, None),
    ],
)
def test_one_rule_for_a_partitions_lag(committed, begin, end, lag, shown):
    row = partition_lag(3, committed, begin, end)
    assert row.lag == lag
    assert row.as_dict() == {"partition": 3, "committed": shown, "end": end, "lag": lag}


def test_snapshot_keys():
    assert ingest_metrics_key("binance") == "metrics:ingest:binance"
    assert consumer_metrics_key("host-42") == "metrics:consumer:host-42"


@pytest.mark.integration
def test_the_snapshot_is_written_with_a_ttl_and_an_unreachable_redis_is_only_logged(caplog):
    member = "steps-test-host-1"
    publisher = SnapshotPublisher(member)
    assert publisher.key == f"{CONSUMER_METRICS_PREFIX}{member}"
    client = redis_client()
    try:
        assert publisher.publish({"stored": 3}) is True
        assert orjson.loads(client.get(publisher.key) or b"{}") == {"stored": 3}
        assert 0 < client.ttl(publisher.key) <= 30
    finally:
        client.delete(publisher.key)
        client.close()
    down = SnapshotPublisher(member, client=lambda: redis_client("redis://127.0.0.1:9/0", timeout=1))
    assert down.publish({"stored": 3}) is False
    assert "metrics snapshot not written to Redis" in caplog.text
