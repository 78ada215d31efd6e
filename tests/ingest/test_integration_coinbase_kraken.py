"""simulator -> ingest -> real Kafka for Coinbase (real recording) and Kraken (real Binance trades relabelled)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import orjson
import pytest

from ingest.records import decode
from tests.conftest import ChildProcess, KafkaTopics
from tests.ingest.pipeline import (
    BTC_0808,
    final_metrics,
    read_topic,
    recorded_trades,
    start_ingest,
    start_simulator,
    wait_exit,
)
from tests.ingest.recordings import COINBASE_RECORDING, coinbase_frames

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Spawn = Callable[..., ChildProcess]


def test_coinbase_replay_publishes_every_recorded_trade(kafka_topics: KafkaTopics, spawn: Spawn) -> None:
    pytest.importorskip("ingest.simulator.coinbase", reason="the Coinbase simulator has not landed")
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
    pytest.importorskip("ingest.simulator.kraken", reason="the Kraken simulator has not landed")
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
