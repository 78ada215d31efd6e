"""simulator -> ingest -> real Kafka, Binance: exact replay, drops and gaps with backfill, DLQ, shutdown."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import orjson
import pytest
import redis
from django.conf import settings

from ingest.records import decode
from tests.conftest import ChildProcess, KafkaTopics, manage, subprocess_env, wait_for
from tests.ingest.pipeline import (
    BTC_0808,
    final_metrics,
    read_topic,
    read_until,
    recorded_trades,
    start_ingest,
    start_simulator,
    wait_exit,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Spawn = Callable[..., ChildProcess]


def test_replay_puts_every_recorded_trade_on_the_topic_exactly(kafka_topics: KafkaTopics, spawn: Spawn) -> None:
    expected = recorded_trades()
    assert len(expected) == 9757
    _sim, port = start_simulator(spawn, "--exchange", "binance", "--replay", str(BTC_0808), "--speed", "0")
    ingest = start_ingest(spawn, "binance", port, "btcusdt", "--max-trades", "9757")
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]

    messages = read_topic(kafka_topics.trades, 9757)
    assert len(messages) == 9757
    assert {key for key, _ in messages} == {b"binance:BTCUSDT"}
    records = sorted((decode(value) for _, value in messages), key=lambda r: r.trade_id)
    for record, trade in zip(records, expected, strict=True):
        assert record.trade_id == trade["t"]
        assert record.price == trade["p"]
        assert record.quantity == trade["q"]
        assert record.is_buyer_maker is trade["m"]
        assert (record.trade_time, record.event_time) == (trade["T"], trade["E"])
    # raw wire form: decimal strings, schema version
    wire = orjson.loads(messages[0][1])
    assert wire["v"] == 1
    assert isinstance(wire["price"], str)

    metrics = final_metrics(ingest)
    assert metrics["trades_published"] == 9757
    assert metrics["messages_received"] >= 9757
    assert (metrics["malformed"], metrics["gaps"], metrics["publish_errors"]) == (0, 0, 0)
    stored = redis.Redis.from_url(settings.REDIS_URL).get("metrics:ingest:binance")
    assert stored is not None
    assert orjson.loads(stored)["exchange"] == "binance"
    assert read_topic(kafka_topics.dlq, 0, timeout=5) == []


def test_drops_and_gaps_lose_no_trade(kafka_topics: KafkaTopics, spawn: Spawn) -> None:
    expected = {t["t"]: t for t in recorded_trades()}
    _sim, port = start_simulator(
        spawn,
        "--exchange",
        "binance",
        "--replay",
        str(BTC_0808),
        "--speed",
        "0",
        "--loop",
        "--drop-every",
        "2000",
        "--gap-every",
        "97",
        "--max-rate",
        "5000",
    )
    # The backfill runs beside the stream (never on the socket thread, which it would stall), so the trades of a gap
    # land after later ones: ingest runs on (the replay loops with shifted ids) until every recorded id is there.
    ingest = start_ingest(spawn, "binance", port, "btcusdt")

    missing = set(expected)
    checked = [0]  # messages already looked at

    def done(messages: list[tuple[bytes | None, bytes]]) -> bool:
        missing.difference_update(decode(value).trade_id for _key, value in messages[checked[0] :])
        checked[0] = len(messages)
        return not missing

    messages = read_until(kafka_topics.trades, done, timeout=180)
    ingest.stop()
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]
    metrics = final_metrics(ingest)
    assert metrics["reconnects"] >= 3  # ~9,700 frames, a drop every 2,000
    # ids skipped every 97 trades and the frames in flight at each drop: the skipped ids alone make ~100
    # trades, though one drop's gap often swallows several of them
    assert metrics["gaps"] >= 20
    assert metrics["backfilled"] >= 100
    # every missing id was backfilled, or was still waiting when ingest stopped (counted as abandoned)
    assert metrics["missing_trades"] == metrics["backfilled"] + metrics["backfill_abandoned_trades"]

    by_id: dict[int, list[tuple[str, str, bool, int]]] = defaultdict(list)
    for _key, value in messages:
        record = decode(value)
        by_id[record.trade_id].append((record.price, record.quantity, record.is_buyer_maker, record.trade_time))
    assert set(expected) <= set(by_id), "every recorded trade"
    assert min(set(by_id) - set(expected), default=max(expected) + 1) > max(expected), "then the loop's copies"
    for trade_id, trade in expected.items():
        assert set(by_id[trade_id]) == {(trade["p"], trade["q"], trade["m"], trade["T"])}


def test_malformed_frames_go_to_the_dlq_and_never_to_the_trades_topic(kafka_topics: KafkaTopics, spawn: Spawn) -> None:
    expected = {t["t"]: t for t in recorded_trades()}
    _sim, port = start_simulator(
        spawn,
        "--exchange",
        "binance",
        "--replay",
        str(BTC_0808),
        "--speed",
        "0",
        "--malformed-rate",
        "0.02",
        "--seed",
        "7",
    )
    ingest = start_ingest(spawn, "binance", port, "btcusdt", "--max-trades", "9757")
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]
    metrics = final_metrics(ingest)
    assert metrics["malformed"] > 50
    assert metrics["dlq_published"] == metrics["malformed"]

    trades = [decode(value) for _key, value in read_topic(kafka_topics.trades, 9757)]
    assert sorted(t.trade_id for t in trades) == sorted(expected)
    for record in trades:
        assert (record.price, record.quantity) == (expected[record.trade_id]["p"], expected[record.trade_id]["q"])

    letters = [orjson.loads(value) for _key, value in read_topic(kafka_topics.dlq, metrics["malformed"])]
    assert len(letters) == metrics["malformed"]
    reasons = {letter["reason"].split(":")[0] for letter in letters}
    assert "malformed JSON" in reasons
    assert "missing field 'p'" in reasons
    assert any(r.startswith("price must be positive") for r in reasons)
    assert any(r.startswith("quantity is not a number") for r in reasons)
    for letter in letters:
        assert letter["source"] == "ingest:binance"
        assert "btcusdt@trade" in letter["raw"]
        assert letter["received_at"] > 0


def test_sigterm_flushes_everything_accepted(kafka_topics: KafkaTopics, spawn: Spawn) -> None:
    _sim, port = start_simulator(spawn, "--exchange", "binance", "--replay", str(BTC_0808), "--speed", "0", "--loop")
    ingest = start_ingest(spawn, "binance", port, "btcusdt")
    wait_for(lambda: '"trades_published": ' in ingest.output() and "ingest metrics" in ingest.output(), timeout=60)
    assert ingest.stop() == 0, ingest.output()[-3000:]
    metrics = final_metrics(ingest)
    assert metrics["trades_accepted"] > 0
    assert metrics["trades_published"] == metrics["trades_accepted"]
    messages = read_topic(kafka_topics.trades, metrics["trades_published"])
    assert len(messages) == metrics["trades_published"]


def test_unreachable_broker_is_a_clear_error(kafka_topics: KafkaTopics, spawn: Spawn) -> None:
    env = subprocess_env(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", BINANCE_WS_URL="ws://127.0.0.1:9")
    child = spawn(
        manage(
            "ingest", "--exchange", "binance", "--symbols", "btcusdt", "--channels", "trades", "--metrics-port", "0"
        ),
        env=env,
    )
    code = wait_exit(child, timeout=60)
    assert code != 0
    assert "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1" in child.output()
