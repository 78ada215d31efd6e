"""Conformance, pipeline: for every registered exchange, gaps in ids and sequence numbers are detected, a feed with
drops and gaps ends in Kafka with each trade exactly once (REST backfill from the simulator), ranges older than
REST reaches are counted unrecoverable, and the recorder's files give back the trades the exchange sent.

Real servers: the stack's Kafka (the ``kafka_topics`` fixture), the project's simulator over real sockets.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingest.backfill import BackfillWorker, Probe
from ingest.exchanges.base import SEQUENCE_GAP
from ingest.gaps import Gap
from ingest.metrics import IngestMetrics
from ingest.producer import TradeProducer
from ingest.records import TradeRecord, decode
from ingest.runner import FrameProcessor, IngestRunner
from simulator.config import SimulatorConfig
from simulator.recorder import FrameRecorder, record
from simulator.replay import open_binary, read_trades
from simulator.server import BackgroundSimulator
from simulator.synthetic import synthetic_trades
from tests.conformance import hooks
from tests.conftest import KafkaTopics, wait_for
from tests.ingest.pipeline import assert_order_kept, read_topic
from tests.ingest.test_backfill_rest import rest

pytestmark = pytest.mark.integration

EXCHANGES = hooks.names()
NOW = 4_100_000_000_000


def frames_with_trades(exchange: str) -> list[str]:
    """The exchange's real recorded frames, or (none bundled) the simulator's frames of the real Binance trades."""
    if hooks.recording(exchange) is not None:
        return hooks.real_frames(exchange)
    trades = hooks.bundled_trades(exchange, 600)
    return [f.decode() for f in hooks.simulated_frames(exchange, trades, per_frame=5)]


# --------------------------------------------------------------------------------------------- gaps
@pytest.mark.parametrize("exchange", EXCHANGES)
def test_a_missed_frame_is_an_id_gap_per_symbol(
    exchange: str, kafka_topics: KafkaTopics, caplog: pytest.LogCaptureFixture
) -> None:
    """A trade frame taken out of the stream: ingest's frame processor counts one gap per symbol the frame carried,
    naming exactly the ids it held (and, where frames are numbered, the missed frame)."""
    if not hooks.consecutive_ids(exchange):
        pytest.skip(f"{exchange} trade ids are not consecutive: a missing id is no evidence of a gap")
    frames = frames_with_trades(exchange)[:3000]
    parsed = [hooks.expected_trades(exchange, f) for f in frames]
    carrying = [i for i, trades in enumerate(parsed) if trades]
    # A frame in the middle whose every symbol trades again later (so the gap shows at the next trade).
    later: set[str] = set()
    dropped = -1
    for index in reversed(carrying):
        symbols = {t.symbol for t in parsed[index]}
        if index <= carrying[len(carrying) // 2] and symbols <= later:
            dropped = index
            break
        later |= symbols
    assert dropped > 0, "a frame to drop"
    seen_before = {(t.symbol, t.trade_id) for trades in parsed[:dropped] for t in trades}
    missed: dict[str, list[int]] = {}
    for trade in parsed[dropped]:
        if (trade.symbol, trade.trade_id) not in seen_before:
            missed.setdefault(trade.symbol, []).append(trade.trade_id)
    assert missed

    metrics = IngestMetrics(exchange)
    producer = TradeProducer(metrics)
    processor = FrameProcessor(hooks.adapter(exchange), hooks.parser(exchange), producer, metrics)
    try:
        with caplog.at_level("WARNING", logger="ingest.runner"):
            for index, frame in enumerate(frames):
                if index != dropped:
                    # Received now: Kafka refuses record times far in the future (message.timestamp.after.max.ms).
                    processor(frame, int(time.time() * 1000))
    finally:
        undelivered = producer.close(timeout=10)
    assert undelivered == 0
    logged = sorted(
        (r.symbol, r.first, r.last)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.message.startswith("trade ids missing")
    )
    assert logged == sorted((s, min(ids), max(ids)) for s, ids in missed.items())
    assert all(sorted(ids) == list(range(min(ids), max(ids) + 1)) for ids in missed.values())
    assert metrics.missing_trades == sum(len(ids) for ids in missed.values())
    assert metrics.gaps == len(missed) + (1 if hooks.sequenced(exchange) else 0)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_a_missed_frame_without_trades_is_a_sequence_gap(exchange: str) -> None:
    if not hooks.sequenced(exchange):
        pytest.skip(f"{exchange} frames carry no sequence number: only trade ids reveal missed frames")
    frames = frames_with_trades(exchange)
    numbers = [json.loads(f).get("sequence_num") for f in frames]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "the recording misses no frame"
    quiet = next(i for i, f in enumerate(frames) if i > 10 and not hooks.expected_trades(exchange, f))
    parser = hooks.parser(exchange)
    events = []
    for index, frame in enumerate(frames):
        if index != quiet:
            events += [e for e in parser.parse(frame, NOW).events if e.kind == SEQUENCE_GAP]
    assert [e.detail for e in events] == [{"expected": numbers[quiet], "received": numbers[quiet] + 1}]
    # A new connection numbers its frames afresh: no gap.
    parser.connection_reset()
    assert [e for e in parser.parse(frames[0], NOW).events if e.kind == SEQUENCE_GAP] == []


def ingest_from_simulator(
    exchange: str,
    config: SimulatorConfig,
    source: list[TradeRecord],
    done: Callable[[IngestRunner, BackgroundSimulator], bool],
    what: str,
) -> IngestMetrics:
    """Run ingest (in this process, backfilling over the simulator's REST) against a simulator serving ``source``
    until it has published ``len(source)`` trades or ``done(runner)``; returns its metrics once flushed."""
    metrics = IngestMetrics(exchange)
    producer = TradeProducer(metrics)
    with BackgroundSimulator(config, iter(source)) as sim:
        runner = IngestRunner(
            hooks.adapter(exchange, sim.url),
            [hooks.symbol(exchange)],
            producer,
            metrics,
            backfiller=hooks.backfiller(exchange, sim.http_url, min_interval=0, sleep=lambda _s: None),
            max_trades=len(source),
        )
        thread = threading.Thread(target=runner.run, name="conformance-ingest")
        thread.start()
        try:
            wait_for(lambda: not thread.is_alive() or done(runner, sim), timeout=120, interval=0.2, what=what)
        finally:
            runner.stop.set()
            thread.join(30)
            producer.close(timeout=10)
    return metrics


# --------------------------------------------------------------------------------------------- backfill
TRADES = 3000


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_drops_and_gaps_end_with_each_trade_once_on_the_topic(
    exchange: str, kafka_topics: KafkaTopics, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The simulator drops the connection every 60 frames and skips a trade every 97 (both kept in its REST); ingest
    (in this process) heals them over the simulator's REST, and Kafka holds every trade exactly once, in id order
    but for the backfilled gaps (each in order). An exchange whose REST serves only its newest trades takes
    :func:`catch_up_after_drops_loses_nothing_unreported` instead."""
    if not hooks.supports_backfill(exchange):
        pytest.skip(f"{exchange} cannot fetch missing trades back over REST")
    if hooks.catches_up(exchange):
        catch_up_after_drops_loses_nothing_unreported(exchange, kafka_topics, settings, caplog)
        return
    settings.INGEST_QUIET_PROBE_S = 0.5  # a gap at the very end shows through the quiet-symbol probe
    source = hooks.bundled_trades(exchange, TRADES)
    config = SimulatorConfig(
        exchange=exchange,
        speed=0,
        max_rate=1500,
        drop_every=60,
        gap_every=97,
        batch_size=10,
        rest_rate=0,
        ping_interval=None,
        **hooks.simulator_options(exchange),
    )
    caplog.set_level("INFO", logger="ingest.backfill")
    metrics = ingest_from_simulator(
        exchange, config, source, lambda _runner, _sim: False, "ingest to publish every trade"
    )
    messages = read_topic(kafka_topics.trades, TRADES)
    records = [decode(value) for _key, value in messages]
    counts = Counter(r.trade_id for r in records)
    assert [i for i, n in counts.items() if n > 1] == [], "a trade twice"
    assert sorted(counts) == [t.trade_id for t in source]
    want = {t.trade_id: t for t in source}
    for (key, _value), got in zip(messages, records, strict=True):
        sent = want[got.trade_id]
        assert key == f"{exchange}:{got.symbol}".encode()
        assert (got.symbol, got.is_buyer_maker, got.trade_time) == (sent.symbol, sent.is_buyer_maker, sent.trade_time)
        assert hooks.decimal_equal(got.price, sent.price)
        assert hooks.decimal_equal(got.quantity, sent.quantity)
    filled = [r for r in caplog.records if r.message in ("gap backfilled", "gap only partly backfilled")]
    assert_order_kept(messages, {hooks.symbol(exchange): [(r.first, r.last) for r in filled]})  # type: ignore[attr-defined]
    # The faults happened and were healed over REST, none beyond its reach.
    assert metrics.reconnects >= 1
    assert metrics.gaps >= 1
    assert metrics.backfilled > 0, {
        k: v for k, v in vars(metrics).items() if "back" in k or "probe" in k or "reco" in k or "dup" in k
    }
    assert (metrics.backfill_unrecoverable_trades, metrics.backfill_abandoned_trades) == (0, 0)


CATCH_UP_TRADES = 1200


def catch_up_after_drops_loses_nothing_unreported(
    exchange: str, kafka_topics: KafkaTopics, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The drops test of an exchange whose REST serves only its newest trades (Bybit): the simulator drops the
    connection every 30 frames; each new connection's first trades ask REST for what came after the last trade
    seen. Kafka holds no
    trade twice, and every trade it lacks lies in a window ingest reported as possibly lost (counted in
    ``backfill_unrecoverable``). Trades skipped silently within a connection cannot be seen by such an exchange
    (its ids are not consecutive): the simulator skips none here."""
    settings.INGEST_QUIET_PROBE_S = 0.5  # the tail after the last drop shows through the quiet-symbol probe
    source = hooks.bundled_trades(exchange, CATCH_UP_TRADES)
    config = SimulatorConfig(
        exchange=exchange,
        # Paced (speed 0 would hold the feed while nobody is connected): trades go on while ingest reconnects, and
        # at 200 a second a reconnect misses about as many as REST serves, so some drops heal and some do not.
        speed=50,
        max_rate=200,
        drop_every=30,
        batch_size=10,
        rest_rate=0,
        ping_interval=None,
        **hooks.simulator_options(exchange),
    )
    caplog.set_level("INFO", logger="ingest.backfill")
    probes_at_end: list[int] = []

    def probed_after_the_market_ended(runner: IngestRunner, sim: BackgroundSimulator) -> bool:
        # The market is over, and a quiet-symbol probe ran since (its newest trades reach the last one): then
        # whatever it queued is waited for. The last trade itself may lie in a reported window: not waited for.
        if not sim.simulator.feed.finished.is_set():
            return False
        if not probes_at_end:
            probes_at_end.append(runner.metrics.tail_probes)
        return runner.metrics.tail_probes > probes_at_end[0] and runner.processor.wait_backfill(10)

    metrics = ingest_from_simulator(
        exchange, config, source, probed_after_the_market_ended, "a probe after the market ended"
    )
    messages = read_topic(kafka_topics.trades, metrics.trades_accepted)
    records = [decode(value) for _key, value in messages]
    counts = Counter(r.trade_id for r in records)
    assert [i for i, n in counts.items() if n > 1] == [], "a trade twice"
    want = {t.trade_id: t for t in source}
    assert set(counts) <= set(want)
    for got in records:
        sent = want[got.trade_id]
        assert (got.symbol, got.is_buyer_maker, got.trade_time) == (sent.symbol, sent.is_buyer_maker, sent.trade_time)
        assert hooks.decimal_equal(got.price, sent.price)
        assert hooks.decimal_equal(got.quantity, sent.quantity)
    windows = [
        (r.after_time, r.before_time)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.message.startswith("trades between these times may be lost")
    ]
    missing = [t for t in source if t.trade_id not in counts]
    unreported = [t.trade_id for t in missing if not any(lo <= t.trade_time <= hi for lo, hi in windows)]
    assert unreported == [], f"{len(unreported)} trades lost without a report"
    assert metrics.backfill_unrecoverable == len(windows)
    # The faults happened, and the catch-up brought trades back over REST.
    assert metrics.reconnects >= 1
    assert metrics.tail_probes >= metrics.reconnects
    assert metrics.backfilled > 0, {
        k: v for k, v in vars(metrics).items() if "back" in k or "probe" in k or "reco" in k or "dup" in k
    }


FIRST_ID = 1_000_000
START = 1_700_000_000_000


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_ids_older_than_the_rest_history_are_counted_unrecoverable(
    exchange: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Ranges partly and wholly older than REST's history are counted unrecoverable, with their ranges logged (an
    exchange whose REST serves only its newest trades: :func:`a_catch_up_beyond_the_rest_reach_reports_its_window`)."""
    if not hooks.supports_backfill(exchange):
        pytest.skip(f"{exchange} cannot fetch missing trades back over REST: nothing to count as out of reach")
    if hooks.catches_up(exchange):
        a_catch_up_beyond_the_rest_reach_reports_its_window(exchange, caplog)
        return
    source = synthetic_trades([hooks.symbol(exchange)], 1000.0, exchange=exchange, start_ms=START, seed=3)
    records = list(itertools.islice(source, 3000))
    assert records[0].trade_id == FIRST_ID
    reach = FIRST_ID + 2000  # REST serves the newest 1,000 trades only
    published: list[int] = []

    def publish(page: list[TradeRecord]) -> int:
        published.extend(t.trade_id for t in page)
        return len(page)

    with rest(exchange, records, rest_history=1000, rest_rate=0) as sim:
        metrics = IngestMetrics(exchange)
        client = hooks.backfiller(exchange, sim.http_url, min_interval=0, sleep=lambda _s: None, attempts=3)
        worker = BackfillWorker(client, publish, lambda *_a: None, metrics, exchange, 100_000, 10)
        with caplog.at_level("WARNING", logger="ingest.backfill"):
            # Partly out of reach, then wholly out of reach.
            worker.fill(Gap(hooks.symbol(exchange), FIRST_ID + 500, reach + 100, records[499].trade_time))
            worker.fill(Gap(hooks.symbol(exchange), FIRST_ID + 10, FIRST_ID + 20, records[9].trade_time))
    assert published == list(range(reach, reach + 101))
    assert (metrics.backfill_unrecoverable, metrics.backfill_unrecoverable_trades) == (2, 1500 + 11)
    assert (metrics.backfill_abandoned, metrics.backfilled) == (0, 101)
    lost = [r for r in caplog.records if "not recoverable" in r.message]
    assert [(r.first, r.last, r.missing) for r in lost] == [  # type: ignore[attr-defined]
        (FIRST_ID + 500, reach - 1, 1500),
        (FIRST_ID + 10, FIRST_ID + 20, 11),
    ]
    partly = [r for r in caplog.records if r.message == "gap only partly backfilled"]
    assert [r.unrecoverable for r in partly] == [1500, 11]  # type: ignore[attr-defined]


def a_catch_up_beyond_the_rest_reach_reports_its_window(exchange: str, caplog: pytest.LogCaptureFixture) -> None:
    """The reach test of an exchange whose REST serves only the newest trades: a catch-up after a trade it still
    serves brings every trade since, and one after a trade older than that reports the window between as possibly
    lost, counted once."""
    reach = hooks.rest_reach(exchange)
    assert reach is not None
    records = list(itertools.islice(synthetic_trades([hooks.symbol(exchange)], 1000.0, exchange=exchange, seed=5), 500))
    published: list[TradeRecord] = []

    def publish(page: list[TradeRecord]) -> int:
        published.extend(page)
        return len(page)

    with rest(exchange, records, rest_rate=0) as sim:
        metrics = IngestMetrics(exchange)
        client = hooks.backfiller(exchange, sim.http_url, min_interval=0, sleep=lambda _s: None, attempts=3)
        worker = BackfillWorker(client, publish, lambda *_a: None, metrics, exchange, 100_000, 10)
        seen = records[-reach + 10]  # still served: everything after it comes back
        with caplog.at_level("WARNING", logger="ingest.backfill"):
            worker.fill_tail(Probe(hooks.symbol(exchange), seen.trade_id, seen.trade_time))
        assert [t.trade_id for t in published if t.trade_id > seen.trade_id] == [
            t.trade_id for t in records if t.trade_id > seen.trade_id
        ]
        assert all(t.trade_time >= seen.trade_time for t in published)
        assert metrics.backfill_unrecoverable == 0
        published.clear()
        old = records[100]  # far older than the newest ``reach``: the trades between are out of reach
        with caplog.at_level("WARNING", logger="ingest.backfill"):
            worker.fill_tail(Probe(hooks.symbol(exchange), old.trade_id, old.trade_time))
    assert [t.trade_id for t in published] == [t.trade_id for t in records[-reach:]]
    assert metrics.backfill_unrecoverable == 1
    (lost,) = [r for r in caplog.records if r.message.startswith("trades between these times may be lost")]
    assert (lost.after_time, lost.before_time) == (old.trade_time, records[-reach].trade_time)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------- recorder
def record_from_simulator(exchange: str, trades: list[TradeRecord], out: Path) -> list[Path]:
    """``manage.py record``'s loop against the simulator serving ``trades``, until the recorded frames hold every
    one of them; returns the finished files."""
    wanted = {t.trade_id for t in trades}
    config = SimulatorConfig(exchange=exchange, speed=0, ping_interval=None, **hooks.simulator_options(exchange))
    with BackgroundSimulator(config, iter(trades)) as sim:
        recorder = FrameRecorder(out, exchange, flush_interval=0.0)
        stop = threading.Event()
        thread = threading.Thread(target=record, args=(exchange, [hooks.symbol(exchange)], sim.url, recorder, stop))
        thread.start()

        def every_trade_recorded() -> bool:
            got: set[int] = set()
            for part in out.glob("*.frames.part"):
                for line in part.read_bytes().splitlines():
                    got.update(t.trade_id for t in hooks.expected_trades(exchange, line.split(b" ", 1)[1]))
            return got >= wanted

        try:
            wait_for(every_trade_recorded, timeout=60, interval=0.1, what="the recorder to hold every trade")
        finally:
            stop.set()
            thread.join(60)
    assert not thread.is_alive()
    return recorder.finished


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_recorded_frames_parse_to_the_trades_sent(exchange: str, tmp_path: Path) -> None:
    trades = hooks.bundled_trades(exchange, 500)
    files = record_from_simulator(exchange, trades, tmp_path)
    assert files
    parser = hooks.parser(exchange)
    got: list[TradeRecord] = []
    stamps: list[int] = []
    for path in files:
        with open_binary(path) as handle:
            for line in handle.read().splitlines():
                stamp, frame = line.split(b" ", 1)
                stamps.append(int(stamp))
                got += parser.parse(frame, NOW).trades
    assert stamps == sorted(stamps)
    assert all(len(str(stamp)) == 19 for stamp in stamps)  # nanoseconds
    assert [t.trade_id for t in got] == [t.trade_id for t in trades]
    for record_, trade in zip(got, trades, strict=True):
        assert (record_.symbol, record_.is_buyer_maker, record_.trade_time) == (
            trade.symbol,
            trade.is_buyer_maker,
            trade.trade_time,
        )
        assert hooks.decimal_equal(record_.price, trade.price)
        assert hooks.decimal_equal(record_.quantity, trade.quantity)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_recorder_files_replay_to_the_trades_sent(exchange: str, tmp_path: Path) -> None:
    """Record, then replay the files as ``simulate_exchange --replay`` reads them (the exchange judged from the
    frames by the registered parsers): the same trades. Then the same frames bare, without receive times."""
    assert hooks.replays_recordings(exchange)
    trades = hooks.bundled_trades(exchange, 500)
    files = record_from_simulator(exchange, trades, tmp_path)
    replayed = [r for path in files for r in read_trades(path)]
    assert [(r.exchange, r.symbol, r.trade_id, r.trade_time, r.is_buyer_maker) for r in replayed] == [
        (t.exchange, t.symbol, t.trade_id, t.trade_time, t.is_buyer_maker) for t in trades
    ]
    assert all(
        hooks.decimal_equal(r.price, t.price) and hooks.decimal_equal(r.quantity, t.quantity)
        for r, t in zip(replayed, trades, strict=True)
    )
    bare = tmp_path / "bare.jsonl"
    with bare.open("wb") as out:
        for path in files:
            for line in open_binary(path):
                _, _, frame = line.strip().partition(b" ")
                out.write(frame + b"\n")
    again = list(read_trades(bare))
    assert [(r.exchange, r.symbol, r.trade_id, r.trade_time) for r in again] == [
        (t.exchange, t.symbol, t.trade_id, t.trade_time) for t in trades
    ]
    assert all(r.received_at == r.event_time for r in again)
