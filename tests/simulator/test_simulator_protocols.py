"""The Coinbase Advanced Trade and Kraken v2 simulators on a real socket: subscriptions, snapshots, updates,
sequence numbers, heartbeats, errors, exact numbers, and faults."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.records import TradeRecord
from simulator.base import rfc3339
from simulator.binance import METHODS as BINANCE_METHODS
from simulator.feed import replay_source
from simulator.replay import read_trades
from tests.conftest import wait_for
from tests.simulator.test_simulator_support import BTC_0808, COINBASE, connect, recv_json, running

pytestmark = pytest.mark.unit

COINBASE_RECORDS = list(read_trades(COINBASE))
BTC_RECORDS = list(read_trades(BTC_0808))
SUBSCRIBE_TRADES = {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "market_trades"}


def send(ws: websocket.WebSocket, payload: Any) -> None:
    ws.send(payload if isinstance(payload, str) else orjson.dumps(payload).decode())


def coinbase_trade(record: TradeRecord) -> dict[str, str]:
    return {
        "product_id": record.symbol,
        "trade_id": str(record.trade_id),
        "price": record.price,
        "size": record.quantity,
        "time": rfc3339(record.trade_time),
        "side": "SELL" if record.is_buyer_maker else "BUY",
    }


def coinbase_collect(ws: websocket.WebSocket, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Frames until ``count`` update trades arrived; returns (frames, update trades in arrival order)."""
    frames: list[dict[str, Any]] = []
    trades: list[dict[str, Any]] = []
    while len(trades) < count:
        frame = recv_json(ws)
        frames.append(frame)
        for event in frame["events"]:
            if frame["channel"] == "market_trades" and event["type"] == "update":
                # Coinbase lists an update's trades newest first.
                trades.extend(reversed(event["trades"]))
    return frames, trades


def test_coinbase_replays_the_recording_with_per_connection_sequence_numbers() -> None:
    with running(iter(COINBASE_RECORDS), exchange="coinbase") as sim:
        ws = connect(sim.url)
        send(ws, SUBSCRIBE_TRADES)
        frames, trades = coinbase_collect(ws, len(COINBASE_RECORDS))
        assert [f["sequence_num"] for f in frames] == list(range(len(frames)))
        assert [(f["channel"], f["events"][0].get("type")) for f in frames[:3]] == [
            ("market_trades", "snapshot"),
            ("market_trades", "snapshot"),
            ("subscriptions", None),
        ]
        assert frames[2]["events"] == [{"subscriptions": {"market_trades": ["BTC-USD", "ETH-USD"]}}]
        assert all(f["client_id"] == "" and f["timestamp"].endswith("Z") for f in frames)
        assert trades == [coinbase_trade(record) for record in COINBASE_RECORDS]
        assert max(len(f["events"][0]["trades"]) for f in frames[3:]) <= 100
        wait_for(lambda: sim.call(lambda: sim.simulator.feed.finished.is_set()), what="the feed to finish")

        # A later connection starts with a snapshot of the latest trades (newest first) and its own numbering.
        late = connect(sim.url)
        send(late, {"type": "subscribe", "product_ids": ["BTC-EUR"], "channel": "market_trades"})
        assert recv_json(late) == {"type": "error", "message": "failure to subscribe: unknown product ids BTC-EUR"}
        send(late, {"type": "subscribe", "product_ids": ["eth-usd"], "channel": "market_trades"})
        snapshot = recv_json(late)
        assert snapshot["sequence_num"] == 0
        eth = [r for r in COINBASE_RECORDS if r.symbol == "ETH-USD"]
        assert snapshot["events"] == [{"type": "snapshot", "trades": [coinbase_trade(r) for r in reversed(eth[-50:])]}]
        assert recv_json(late)["sequence_num"] == 1
        send(late, {"type": "unsubscribe", "product_ids": ["ETH-USD"], "channel": "market_trades"})
        reply = recv_json(late)
        assert (reply["channel"], reply["sequence_num"], reply["events"]) == (
            "subscriptions",
            2,
            [{"subscriptions": {}}],
        )


def test_coinbase_heartbeats_errors_and_relabelled_binance_trades() -> None:
    records = BTC_RECORDS[:1000]
    with running(iter(records), exchange="coinbase", heartbeat_interval=0.05, batch_size=64) as sim:
        ws = connect(sim.url)
        for bad in (
            "{nope",
            {"type": "hello"},
            {"type": "subscribe", "channel": "level3", "product_ids": ["BTC-USDT"]},
            {"type": "subscribe", "channel": "market_trades"},
            {"type": "subscribe", "channel": "market_trades", "product_ids": [1]},
        ):
            send(ws, bad)
            reply = recv_json(ws)
            assert reply["type"] == "error", bad
            assert reply["message"]
        send(ws, {"type": "subscribe", "channel": "heartbeats"})
        reply = recv_json(ws)
        assert reply["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"]}}]
        beats = [recv_json(ws) for _ in range(2)]
        assert [b["channel"] for b in beats] == ["heartbeats", "heartbeats"]
        assert [b["events"][0]["heartbeat_counter"] for b in beats] == [1, 2]
        send(ws, {"type": "subscribe", "channel": "market_trades", "product_ids": ["BTC-USDT"]})
        frames, trades = coinbase_collect(ws, len(records))
        sequence = [reply["sequence_num"], *(b["sequence_num"] for b in beats), *(f["sequence_num"] for f in frames)]
        assert sequence == list(range(sequence[0], sequence[0] + len(sequence)))
        assert [t["trade_id"] for t in trades] == [str(r.trade_id) for r in records]
        assert {t["product_id"] for t in trades} == {"BTC-USDT"}
        assert [t["price"] for t in trades] == [r.price for r in records]
        updates = [f for f in frames if f["channel"] == "market_trades" and f["events"][0]["type"] == "update"]
        assert max(len(f["events"][0]["trades"]) for f in updates) == 64


def test_coinbase_batches_updates_over_an_interval_at_recorded_pacing() -> None:
    # The recording spans about 97 s of trades: at speed 200 that is about half a second.
    with running(iter(COINBASE_RECORDS), exchange="coinbase", speed=200.0, batch_interval=0.05) as sim:
        ws = connect(sim.url)
        send(ws, SUBSCRIBE_TRADES)
        frames, trades = coinbase_collect(ws, len(COINBASE_RECORDS))
        assert sorted(t["trade_id"] for t in trades) == sorted(str(r.trade_id) for r in COINBASE_RECORDS)
        updates = [f for f in frames if f["channel"] == "market_trades" and f["events"][0]["type"] == "update"]
        assert len(updates) < len(COINBASE_RECORDS)  # several trades per frame: batched


def test_coinbase_malformed_frames_never_replace_real_trades() -> None:
    with running(iter(COINBASE_RECORDS), exchange="coinbase", malformed_rate=0.5, seed=3, batch_size=5) as sim:
        ws = connect(sim.url)
        send(ws, SUBSCRIBE_TRADES)
        good: list[dict[str, Any]] = []
        bad = 0
        while len(good) < len(COINBASE_RECORDS):
            try:
                frame = recv_json(ws)
            except orjson.JSONDecodeError:
                bad += 1
                continue
            for event in frame["events"]:
                trades = event.get("trades", []) if event.get("type") == "update" else []
                if any("price" not in t or t["price"].startswith("-") or t["size"] == "n/a" for t in trades):
                    bad += 1
                    continue
                good.extend(reversed(trades))
        assert good == [coinbase_trade(r) for r in COINBASE_RECORDS]
        assert bad > 5


def kraken_subscribe(ws: websocket.WebSocket, pairs: list[str], **params: Any) -> None:
    send(ws, {"method": "subscribe", "params": {"channel": "trade", "symbol": pairs, **params}, "req_id": 42})


def test_kraken_status_ack_snapshot_updates_with_exact_numbers() -> None:
    with running(iter(BTC_RECORDS), exchange="kraken") as sim:
        ws = connect(sim.url + "/v2")
        status = recv_json(ws)
        assert status["channel"] == "status"
        assert status["data"][0]["system"] == "online"
        kraken_subscribe(ws, ["BTC/USDT"])
        ack = recv_json(ws)
        assert ack["method"] == "subscribe"
        assert ack["success"] is True
        assert ack["req_id"] == 42
        assert ack["result"] == {"channel": "trade", "symbol": "BTC/USDT", "snapshot": True}
        assert recv_json(ws) == {"channel": "trade", "type": "snapshot", "data": []}  # nothing traded yet
        trades: list[dict[str, Any]] = []
        while len(trades) < len(BTC_RECORDS):
            frame = json.loads(ws.recv(), parse_float=Decimal)
            if frame.get("channel") == "trade":
                assert frame["type"] == "update"
                trades.extend(frame["data"])
        assert [t["trade_id"] for t in trades] == [r.trade_id for r in BTC_RECORDS]
        # JSON numbers written from the exact strings: read as Decimal they give the recorded text back.
        assert [str(t["price"]) for t in trades] == [r.price for r in BTC_RECORDS]
        assert [str(t["qty"]) for t in trades] == [r.quantity for r in BTC_RECORDS]
        assert [t["side"] for t in trades] == ["sell" if r.is_buyer_maker else "buy" for r in BTC_RECORDS]
        assert {t["symbol"] for t in trades} == {"BTC/USDT"}
        assert trades[0]["timestamp"] == rfc3339(BTC_RECORDS[0].trade_time)
        wait_for(lambda: sim.call(lambda: sim.simulator.feed.finished.is_set()), what="the feed to finish")

        late = connect(sim.url + "/v2")
        recv_json(late)
        kraken_subscribe(late, ["BTC/USDT"])
        recv_json(late)
        snapshot = recv_json(late)
        assert snapshot["type"] == "snapshot"
        assert [t["trade_id"] for t in snapshot["data"]] == [r.trade_id for r in BTC_RECORDS[-50:]]  # oldest first
        without = connect(sim.url + "/v2")
        recv_json(without)
        kraken_subscribe(without, ["BTC/USDT"], snapshot=False)
        assert recv_json(without)["result"]["snapshot"] is False
        send(without, {"method": "unsubscribe", "params": {"channel": "trade", "symbol": ["BTC/USDT"]}})
        reply = recv_json(without)
        assert (reply["method"], reply["success"], reply["result"]) == (
            "unsubscribe",
            True,
            {"channel": "trade", "symbol": "BTC/USDT"},
        )


def test_kraken_ping_heartbeat_and_errors() -> None:
    records = list(itertools.islice(iter(BTC_RECORDS), 10))
    with running(iter(records), exchange="kraken", heartbeat_interval=0.05, symbols=("BTC/USDT",)) as sim:
        ws = connect(sim.url + "/v2")
        recv_json(ws)
        send(ws, {"method": "ping", "req_id": 7})
        pong = recv_json(ws)
        assert (pong["method"], pong["req_id"]) == ("pong", 7)
        assert pong["time_in"].endswith("Z")
        send(ws, {"method": "ping"})
        assert "req_id" not in recv_json(ws)
        for bad in (
            "{nope",
            "[]",
            {"method": "dance"},
            {"method": "subscribe", "params": {"channel": "ticker", "symbol": ["BTC/USDT"]}},
            {"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USDT"], "depth": 7}},
            {"method": "subscribe", "params": {"channel": "book", "symbol": "BTC/USDT"}},
            {"method": "subscribe", "params": "trade"},
            {"method": "subscribe", "params": {"channel": "trade", "symbol": "BTC/USDT"}},
        ):
            send(ws, bad)
            reply = recv_json(ws)
            assert reply["success"] is False, bad
            assert reply["error"]
        kraken_subscribe(ws, ["ETH/USD", "BTCUSDT", "BTC/USDT"])
        first, second = recv_json(ws), recv_json(ws)
        assert (first["success"], first["symbol"], first["req_id"]) == (False, "ETH/USD", 42)
        assert "not supported" in first["error"]
        assert (second["success"], second["symbol"]) == (False, "BTCUSDT")
        assert recv_json(ws)["success"] is True
        seen = {"trade": 0, "heartbeat": 0}
        while seen["trade"] < len(records) or seen["heartbeat"] < 2:
            frame = recv_json(ws)
            seen[frame["channel"]] += len(frame["data"]) if frame["channel"] == "trade" else 1
        assert seen["trade"] == len(records)


def test_coinbase_recording_announces_all_its_products_before_the_market_opens() -> None:
    records, pace, names = replay_source([COINBASE])
    assert names == ["BTC-USD", "ETH-USD"]
    with running(records, pace, exchange="coinbase", symbols=tuple(names)) as sim:
        ws = connect(sim.url)
        send(ws, {"type": "subscribe", "product_ids": ["ETH-USD"], "channel": "market_trades"})
        _, trades = coinbase_collect(ws, 132)
        assert {t["product_id"] for t in trades} == {"ETH-USD"}
        send(ws, {"type": "subscribe", "product_ids": ["DOGE-USD"], "channel": "market_trades"})
        reply: dict[str, Any] = {}
        while reply.get("type") != "error":
            reply = recv_json(ws)
        assert "DOGE-USD" in reply["message"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def near_valid(methods: list[str], keys: list[str]) -> st.SearchStrategy[Any]:
    """Control messages that are almost right: real method names and keys with arbitrary values."""
    return st.fixed_dictionaries({"method": st.sampled_from(methods)}, optional=dict.fromkeys(keys, JSON))


@pytest.mark.parametrize("exchange", ["binance", "kraken"])
def test_fuzzed_control_messages_always_get_a_reply_and_never_break_the_connection(exchange: str) -> None:
    if exchange == "binance":
        messages = JSON | near_valid([*BINANCE_METHODS, "subscribe"], ["params", "id"])
    else:
        messages = JSON | near_valid(["subscribe", "unsubscribe", "ping", "pong"], ["params", "req_id"])
    with running(iter(BTC_RECORDS[:10]), exchange=exchange, max_incoming_per_s=0, symbols=("BTC/USDT",)) as sim:
        ws = connect(sim.url + ("/ws" if exchange == "binance" else "/v2"))
        if exchange == "kraken":
            recv_json(ws)  # status
        probes = itertools.count()

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(message=messages)
        def check(message: Any) -> None:
            ws.send(orjson.dumps(message).decode())
            probe = f"probe-{next(probes)}"
            # A known-good request after each one: its reply proves the connection survived.
            if exchange == "binance":
                ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": probe}).decode())
            else:
                ws.send(orjson.dumps({"method": "ping", "req_id": probe}).decode())
            replies = []
            while True:
                reply = json.loads(ws.recv(), parse_float=Decimal)
                if reply.get("id") == probe or reply.get("req_id") == probe:
                    break
                replies.append(reply)
            if exchange == "binance":
                assert len(replies) == 1  # exactly one reply (result or error) per request
                assert "result" in replies[0] or "error" in replies[0]

        check()
