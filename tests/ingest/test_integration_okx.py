"""simulator -> ingest -> real Kafka for OKX, on the real recording: every recorded BTC-USDT fill published once
with its exact values (a taker order's fills aggregated as OKX pushes them, or single fills backfilled over REST),
and WebSocket drops with id gaps healed over REST ``history-trades``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pytest

from ingest.records import TradeRecord, decode
from tests.conftest import ChildProcess, KafkaTopics
from tests.ingest.pipeline import final_metrics, read_topic, read_until, start_ingest, start_simulator, wait_exit
from tests.ingest.test_integration_coinbase_kraken import assert_healed, run_until_recorded
from tests.ingest.test_okx_parser import OKX_RECORDING, trade_frames

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Spawn = Callable[..., ChildProcess]


def okx_recorded(inst_id: str = "BTC-USDT") -> dict[tuple[str, int], tuple[str, str, bool, int]]:
    """(instrument, trade id) -> (px, sz, buyer is maker, ts) of every recorded trade of ``inst_id``, from the raw
    JSON."""
    expected = {}
    for _received, frame in trade_frames():
        for t in json.loads(frame)["data"]:
            if t["instId"] == inst_id:
                expected[(t["instId"], int(t["tradeId"]))] = (t["px"], t["sz"], t["side"] == "sell", int(t["ts"]))
    return expected


def assert_each_fill_once(records: list[TradeRecord], fills: dict[tuple[str, int], tuple[str, str, bool, int]]) -> None:
    """The records of one instrument (in id order, within the recorded ids) hold every recorded fill exactly once: a
    record stands for the fills after the previous record's id up to its own (one fill, or an aggregate), all at
    its price, side and time, its quantity their sum."""
    ids = sorted(i for _s, i in fills)
    previous = ids[0] - 1
    for record in records:
        run = [fills[(record.symbol, i)] for i in range(previous + 1, record.trade_id + 1)]
        assert {(px, maker, ts) for px, _sz, maker, ts in run} == {
            (record.price, record.is_buyer_maker, record.trade_time)
        }
        assert Decimal(record.quantity) == sum(Decimal(sz) for _px, sz, _maker, _ts in run)
        previous = record.trade_id
    assert previous == ids[-1]


def test_okx_replay_publishes_every_recorded_fill_once(kafka_topics: KafkaTopics, spawn: Spawn) -> None:
    expected = okx_recorded()
    assert len(expected) == 69
    last = max(i for _s, i in expected)
    _sim, port = start_simulator(spawn, "--exchange", "okx", "--replay", str(OKX_RECORDING), "--speed", "0")
    ingest = start_ingest(spawn, "okx", port, "BTC-USDT")
    _messages = read_until(kafka_topics.trades, lambda m: bool(m) and decode(m[-1][1]).trade_id == last, timeout=60)
    ingest.stop()
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]
    metrics = final_metrics(ingest)
    assert (metrics["gaps"], metrics["malformed"], metrics["duplicates"]) == (0, 0, 0)
    messages = read_topic(kafka_topics.trades, metrics["trades_published"])
    assert len(messages) == metrics["trades_published"] < len(expected)  # some fills came aggregated
    records = [decode(value) for _key, value in messages]
    assert {key for key, _value in messages} == {b"okx:BTC-USDT"}
    assert [r.trade_id for r in records] == sorted(r.trade_id for r in records)  # in id order
    assert_each_fill_once(records, expected)


def test_okx_drops_and_gaps_are_backfilled_over_rest(kafka_topics: KafkaTopics, spawn: Spawn) -> None:
    expected = okx_recorded()
    last = max(i for _s, i in expected)
    sim_args = ["--replay", str(OKX_RECORDING), "--speed", "0", "--loop", "--max-rate", "1500"]
    # A REST limit the 0.02 s pace exceeds: HTTP 429 / code 50011 answers are backed off and retried.
    sim_args += ["--drop-every", "25", "--gap-every", "13", "--rest-rate", "10"]
    # Wanted: the recorded run's last id (aggregates end on some ids only; the last one always ends a run).
    messages, metrics, gaps = run_until_recorded(spawn, kafka_topics, "okx", sim_args, "BTC-USDT", {("BTC-USDT", last)})
    records = sorted((decode(value) for _key, value in messages), key=lambda r: r.trade_id)
    assert Counter(r.symbol for r in records) == {"BTC-USDT": len(records)}
    assert_each_fill_once([r for r in records if r.trade_id <= last], expected)
    assert_healed(messages, metrics, gaps, "okx")
