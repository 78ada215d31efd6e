"""A restarted ingest resumes after Kafka's last trade and backfills the holes below it; a quiet symbol's tail is
probed over REST (a real producer on per-test topics, a real HTTP server for REST)."""

from __future__ import annotations

import itertools
import time

import pytest

from ingest.backfill import Probe
from ingest.exchanges.binance.adapter import BinanceExchange
from ingest.exchanges.binance.backfill import BinanceBackfiller
from ingest.exchanges.bybit.adapter import BybitExchange
from ingest.exchanges.bybit.backfill import BybitBackfiller
from ingest.exchanges.coinbase.adapter import CoinbaseExchange
from ingest.metrics import IngestMetrics
from ingest.producer import TradeProducer
from ingest.records import decode
from ingest.resume import ResumePoint, holes
from ingest.runner import FrameProcessor, IngestRunner
from simulator.bybit import encode_trade
from simulator.synthetic import synthetic_trades
from tests.conftest import KafkaTopics
from tests.ingest.pipeline import read_topic
from tests.ingest.test_backfill_rest import rest as rest_simulator
from tests.ingest.test_gaps_backfill import rest  # noqa: F401 - fixture
from tests.ingest.test_runner import NOW, binance_trade

pytestmark = pytest.mark.integration


def _processor(producer: TradeProducer, metrics: IngestMetrics, url: str) -> FrameProcessor:
    adapter = BinanceExchange("ws://unused")
    return FrameProcessor(
        adapter, adapter.parser(), producer, metrics, backfiller=BinanceBackfiller(url, sleep=lambda _s: None)
    )


def test_holes_between_the_smallest_and_largest_id() -> None:
    assert holes([]) == []
    assert holes([5]) == []
    assert holes([9, 5, 6, 6, 12, 10]) == [(7, 8), (11, 11)]


def test_resume_continues_after_kafka_and_backfills_the_holes(
    kafka_topics: KafkaTopics,
    producer: TradeProducer,
    metrics: IngestMetrics,
    rest: str,  # noqa: F811
) -> None:
    processor = _processor(producer, metrics, rest)
    # Kafka holds up to 1005, without 1001..1002 (a backfill the dead process never finished).
    processor.resume({"BTCUSDT": ResumePoint(1005, [(1001, 1002)])})
    # The first live trade after the restart is 1010: 1006..1009 were printed while ingest was down.
    processor(binance_trade(1010), NOW)
    assert processor.wait_backfill(10)
    assert producer.flush(10)
    ids = sorted(decode(value).trade_id for _key, value in read_topic(kafka_topics.trades, 7))
    assert ids == [1001, 1002, 1006, 1007, 1008, 1009, 1010]
    assert (metrics.resumed_holes, metrics.gaps, metrics.missing_trades) == (1, 2, 6)


def test_a_symbol_ingest_already_tracks_keeps_its_position(
    producer: TradeProducer,
    metrics: IngestMetrics,
    rest: str,  # noqa: F811
) -> None:
    processor = _processor(producer, metrics, rest)
    processor(binance_trade(1500), NOW)
    processor.resume({"BTCUSDT": ResumePoint(1200)})
    assert processor.tracker is not None
    assert processor.tracker.last["BTCUSDT"] == 1500


def test_resume_without_backfill_counts_the_holes(producer: TradeProducer, metrics: IngestMetrics) -> None:
    adapter = BinanceExchange("ws://unused")
    processor = FrameProcessor(adapter, adapter.parser(), producer, metrics)
    processor.resume({"BTCUSDT": ResumePoint(10, [(3, 4)])})
    assert (metrics.resumed_holes, metrics.missing_trades) == (1, 2)

    class Untracked(CoinbaseExchange):
        consecutive_ids = False

    plain = Untracked("ws://unused")
    untracked = FrameProcessor(plain, plain.parser(), producer, metrics)
    untracked.resume({"BTC-USD": ResumePoint(10, [(3, 4)])})  # ids not consecutive: nothing to resume by
    assert metrics.resumed_holes == 1


def test_a_quiet_symbols_tail_is_probed_with_a_growing_interval(
    kafka_topics: KafkaTopics,
    producer: TradeProducer,
    metrics: IngestMetrics,
    rest: str,  # noqa: F811
) -> None:
    processor = _processor(producer, metrics, rest)
    processor.quiet_probe_s = 10.0
    clock = [1000.0]
    processor.clock = lambda: clock[0]

    def at(t: float) -> int:
        clock[0] = 1000.0 + t
        queued = processor.probe_quiet()
        assert processor.wait_backfill(10)
        return queued

    processor(binance_trade(1000), NOW)  # seen at t=0
    assert at(9) == 0  # not quiet yet
    assert at(10) == 1  # quiet for 10 s: REST has 1001..2000 (one page), published (seen) at t=10
    assert processor.tracker is not None
    assert processor.tracker.last["BTCUSDT"] == 2000
    assert at(19) == 0
    assert at(20) == 1  # trades came since the last probe: the base interval again; the rest, 2001..2999
    assert at(30) == 1  # ... and again: this one finds nothing (REST ends at 2999)
    assert at(49) == 0  # nothing found: the interval doubles to 20 s
    assert at(50) == 1
    assert at(89) == 0  # 40 s now
    assert at(90) == 1
    assert producer.flush(10)
    assert (metrics.tail_probes, metrics.tail_backfilled) == (5, 1999)
    ids = [decode(value).trade_id for _key, value in read_topic(kafka_topics.trades, 2000)]
    assert sorted(ids) == list(range(1000, 3000))
    processor(binance_trade(3000), NOW)  # a live trade at t=90 resets the interval to the base
    assert at(99) == 0
    assert at(100) == 1


def test_no_probe_without_backfill_or_when_switched_off(
    producer: TradeProducer,
    metrics: IngestMetrics,
    rest: str,  # noqa: F811
) -> None:
    adapter = BinanceExchange("ws://unused")
    processor = FrameProcessor(adapter, adapter.parser(), producer, metrics)
    processor(binance_trade(1000), NOW)
    assert processor.probe_quiet(time.monotonic() + 1000) == 0
    with_rest = _processor(producer, metrics, rest)
    with_rest.quiet_probe_s = 0
    with_rest(binance_trade(1000), NOW)
    assert with_rest.probe_quiet(time.monotonic() + 1000) == 0
    assert with_rest.backfill is not None
    with_rest.stop_backfill()
    assert not with_rest.backfill.probe(Probe("BTCUSDT", 1000))  # stopping: not queued


def test_the_runner_resumes_the_symbols_it_serves_in_their_record_spelling(
    producer: TradeProducer, metrics: IngestMetrics
) -> None:
    runner = IngestRunner(BinanceExchange("ws://unused"), ["btcusdt"], producer, metrics)
    assert runner.record_symbols == ["BTCUSDT"]  # Binance subscribes in lower case; records and keys are upper
    runner.resume({"BTCUSDT": ResumePoint(5), "ETHUSDT": ResumePoint(9)})
    tracker = runner.processor.tracker
    assert tracker is not None
    assert tracker.last == {"BTCUSDT": 5}


def test_bybit_resumes_without_holes_and_catches_up_once_a_new_connection_delivers(
    kafka_topics: KafkaTopics, producer: TradeProducer, metrics: IngestMetrics
) -> None:
    """Bybit's ids are not consecutive: a resume point's holes are no evidence (not counted, not fetched). A new
    connection notes the last trade seen; its first trades ask recent-trade for what came after, and the id check
    drops what was already published."""
    records = list(
        itertools.islice(synthetic_trades(["BTCUSDT"], 1000.0, exchange="bybit", seed=9, start_ms=NOW - 60_000), 100)
    )
    with rest_simulator("bybit", records, rest_rate=0) as sim:
        adapter = BybitExchange("ws://unused")
        client = BybitBackfiller(sim.http_url, min_interval=0, sleep=lambda _s: None)
        processor = FrameProcessor(adapter, adapter.parser(), producer, metrics, backfiller=client)
        resumed = records[69]
        processor.resume({"BTCUSDT": ResumePoint(resumed.trade_id, [(1, 5)], {resumed.trade_id: resumed.trade_time})})
        assert (metrics.resumed_holes, metrics.gaps, metrics.missing_trades) == (0, 0, 0)
        processor.connected()
        live = records[95]  # the new connection's first trade: 70..94 were missed while ingest was away
        frame = f'{{"topic":"publicTrade.BTCUSDT","ts":{live.trade_time},"data":[{encode_trade(live).decode()}]}}'
        processor(frame, NOW)
        assert processor.wait_backfill(10)
        assert producer.flush(10)
    # 70..94 from REST, 95 live; 96..99 are the live stream's to deliver (a catch-up publishes nothing newer than the
    # connection's first trade, tests/simulator/test_simulator_bybit.py); read_topic drains what is beyond.
    ids = [decode(value).trade_id for _key, value in read_topic(kafka_topics.trades, 26)]
    assert ids[0] == live.trade_id
    assert sorted(ids) == [r.trade_id for r in records[70:96]]
    assert (metrics.tail_probes, metrics.backfill_unrecoverable) == (1, 0)
    assert metrics.duplicates >= 1  # the catch-up's rows at and before the resumed trade, and the live one
