"""simulator -> ingest -> real Kafka for Coinbase (real recording) and Kraken (real Binance trades relabelled):
exact replays, and Coinbase's WebSocket drops with id gaps healed by REST backfill through ``manage.py ingest`` (every
exchange's drops and gaps, in process: tests/conformance/test_pipeline.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest

from ingest.records import decode
from tests.conftest import ChildProcess, KafkaTopics
from tests.ingest.pipeline import (
    BTC_0808,
    assert_order_kept,
    backfilled_ranges,
    final_metrics,
    latest_metrics,
    read_topic,
    read_until,
    recorded_trades,
    start_ingest,
    start_simulator,
    wait_exit,
)
from tests.ingest.recordings import COINBASE_RECORDING, coinbase_frames

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Spawn = Callable[..., ChildProcess]


def test_coinbase_replay_publishes_every_recorded_trade(kafka_topics: KafkaTopics, spawn: Spawn) -> None:
    pytest.importorskip("simulator.coinbase", reason="the Coinbase simulator has not landed")
    expected = {}
    for raw in coinbase_frames():
        message = orjson.loads(raw)
        if message.get("channel") == "market_trades":
            for event in message["events"]:
                for t in event["trades"]:
                    expected[(t["product_id"], int(t["trade_id"]))] = (t["price"], t["size"], t["side"] == "SELL")
    _sim, port = start_simulator(spawn, "--exchange", "coinbase", "--replay", str(COINBASE_RECORDING), "--speed", "0")
    ingest = start_ingest(spawn, "coinbase", port, "BTC-USD,ETH-USD", "--max-trades", str(len(expected)))
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]
    assert final_metrics(ingest)["trades_published"] == len(expected)

    messages = read_topic(kafka_topics.trades, len(expected))
    got = {}
    for key, value in messages:
        record = decode(value)
        assert key == f"coinbase:{record.symbol}".encode()
        got[(record.symbol, record.trade_id)] = (record.price, record.quantity, record.is_buyer_maker)
    assert len(messages) == len(expected)
    assert got == expected


def test_kraken_replay_keeps_numbers_exact(kafka_topics: KafkaTopics, spawn: Spawn) -> None:
    pytest.importorskip("simulator.kraken", reason="the Kraken simulator has not landed")
    expected = {t["t"]: t for t in recorded_trades()[:3000]}
    _sim, port = start_simulator(spawn, "--exchange", "kraken", "--replay", str(BTC_0808), "--speed", "0")
    ingest = start_ingest(spawn, "kraken", port, "BTC/USDT", "--max-trades", "3000")
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]
    messages = read_topic(kafka_topics.trades, 3000)
    records = {decode(value).trade_id: decode(value) for _key, value in messages}
    assert len(messages) == 3000
    assert set(records) == set(expected)
    for trade_id, record in records.items():
        assert record.symbol == "BTC/USDT"
        assert same_number(record.price, expected[trade_id]["p"])
        assert same_number(record.quantity, expected[trade_id]["q"])
        assert record.is_buyer_maker is expected[trade_id]["m"]


def same_number(text: str, recorded: str) -> bool:
    """Kraken sends bare JSON numbers (the simulator may drop trailing zeros): equal value, still exact text."""
    return Decimal(text) == Decimal(recorded)


def coinbase_recorded() -> dict[tuple[str, int], tuple[str, str, bool]]:
    """(product, trade id) -> (price, size, buyer is maker) of every trade in the Coinbase recording."""
    expected = {}
    for raw in coinbase_frames():
        message = orjson.loads(raw)
        if message.get("channel") == "market_trades":
            for event in message["events"]:
                for t in event["trades"]:
                    expected[(t["product_id"], int(t["trade_id"]))] = (t["price"], t["size"], t["side"] == "SELL")
    return expected


def run_until_recorded(
    spawn: Spawn, kafka_topics: KafkaTopics, exchange: str, sim_args: list[str], symbols: str, wanted: set[Any]
) -> tuple[list[tuple[bytes | None, bytes]], dict[str, Any], dict[str, list[tuple[int, int]]]]:
    """Run ingest against a looping, faulty simulator until Kafka holds every ``(symbol, id)`` of ``wanted``; then
    stop it. Returns the messages, the final metrics and the gaps the backfill filled."""
    _sim, port = start_simulator(spawn, "--exchange", exchange, *sim_args)
    # Pace REST faster than the real exchanges' public limits (the simulator's limit still applies).
    ingest = start_ingest(spawn, exchange, port, symbols, INGEST_BACKFILL_MIN_INTERVAL_S="0.02")
    missing = set(wanted)
    checked = [0]

    def done(messages: list[tuple[bytes | None, bytes]]) -> bool:
        for _key, value in messages[checked[0] :]:
            record = decode(value)
            missing.discard((record.symbol, record.trade_id))
        checked[0] = len(messages)
        # The feed loops, so its drops and gaps go on: wait until ingest has also lived through the faults that
        # assert_healed requires. How many frames (so drops) the recorded trades alone take depends on how a loaded
        # machine batches them.
        seen = latest_metrics(ingest) if not missing else None
        return seen is not None and seen["reconnects"] >= 2 and seen["gaps"] >= 5

    messages = read_until(kafka_topics.trades, done, timeout=240)
    ingest.stop()
    assert wait_exit(ingest) == 0, ingest.output()[-3000:]
    # Whatever was published after the last read: drained now the process is gone.
    messages = read_topic(kafka_topics.trades, len(messages))
    return messages, final_metrics(ingest), backfilled_ranges(ingest)


def assert_healed(
    messages: list[tuple[bytes | None, bytes]],
    metrics: dict[str, Any],
    gaps: dict[str, list[tuple[int, int]]],
    exchange: str,
) -> None:
    """No trade twice, keys right, order per symbol kept, and every missing id accounted for."""
    keys = Counter((decode(value).symbol, decode(value).trade_id) for _key, value in messages)
    assert [k for k, n in keys.items() if n > 1] == [], "no duplicates"
    for key, value in messages:
        assert key == f"{exchange}:{decode(value).symbol}".encode()
    assert_order_kept(messages, gaps)
    assert metrics["reconnects"] >= 2
    assert metrics["gaps"] >= 5
    assert metrics["backfilled"] > 0
    assert metrics["backfill_unrecoverable_trades"] == 0  # the simulator's REST reaches back to the first trade
    # Every id a gap missed was backfilled, or was still waiting when ingest stopped (counted as abandoned).
    assert metrics["missing_trades"] == (
        metrics["backfilled"] - metrics["tail_backfilled"] + metrics["backfill_abandoned_trades"]
    )


def test_coinbase_drops_and_gaps_are_backfilled_over_rest(kafka_topics: KafkaTopics, spawn: Spawn) -> None:
    expected = coinbase_recorded()
    sim_args = ["--replay", str(COINBASE_RECORDING), "--speed", "0", "--loop", "--max-rate", "1500"]
    sim_args += ["--drop-every", "25", "--gap-every", "13"]
    messages, metrics, gaps = run_until_recorded(
        spawn, kafka_topics, "coinbase", sim_args, "BTC-USD,ETH-USD", set(expected)
    )
    got: dict[tuple[str, int], tuple[str, str, bool]] = {}
    for _key, value in messages:
        record = decode(value)
        got[(record.symbol, record.trade_id)] = (record.price, record.quantity, record.is_buyer_maker)
    assert {k: got[k] for k in expected} == expected  # REST's maker side stored as the feed's taker side
    for product in ("BTC-USD", "ETH-USD"):
        recorded = [i for p, i in expected if p == product]
        extra = [i for p, i in got if p == product and (p, i) not in expected]
        assert min(extra, default=max(recorded) + 1) > max(recorded), "then only the loop's copies"
    assert_healed(messages, metrics, gaps, "coinbase")
