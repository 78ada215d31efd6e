"""Coinbase Advanced Trade parser on the real recording and hand-built edge cases."""

from __future__ import annotations

import orjson
import pytest

from ingest.exchanges.base import ERROR, HEARTBEAT, SEQUENCE_GAP, SUBSCRIPTIONS, rfc3339_ms
from ingest.exchanges.coinbase.adapter import CoinbaseExchange, CoinbaseParser
from tests.ingest.recordings import coinbase_frames

pytestmark = pytest.mark.unit

NOW = 1_786_309_600_000


def frame(trades: list[dict[str, object]], sequence: int = 0, kind: str = "update") -> str:
    return orjson.dumps(
        {
            "channel": "market_trades",
            "timestamp": "2026-08-09T21:05:48.228568804Z",
            "sequence_num": sequence,
            "events": [{"type": kind, "trades": trades}],
        }
    ).decode()


def trade(trade_id: object = "1068572090", **overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "product_id": "BTC-USD",
        "trade_id": trade_id,
        "price": "65083.67",
        "size": "0.002186",
        "time": "2026-08-09T21:05:42.514318Z",
        "side": "SELL",
    }
    base.update(overrides)
    return base


def test_recorded_connection_yields_every_trade_exactly() -> None:
    frames = coinbase_frames()
    expected = {}
    for raw in frames:
        message = orjson.loads(raw)
        if message.get("channel") == "market_trades":
            for event in message["events"]:
                for t in event["trades"]:
                    expected[(t["product_id"], int(t["trade_id"]))] = (t["price"], t["size"], t["side"] == "SELL")
    parser = CoinbaseParser()
    got = {}
    for raw in frames:
        result = parser.parse(raw, NOW)
        assert not any(e.kind == SEQUENCE_GAP for e in result.events)
        for record in result.trades:
            got[(record.symbol, record.trade_id)] = (record.price, record.quantity, record.is_buyer_maker)
    assert len(expected) == 279
    assert got == expected


def test_trades_come_out_oldest_first_with_times_in_ms() -> None:
    parser = CoinbaseParser()
    result = parser.parse(frame([trade("12", side="BUY"), trade("11")], kind="snapshot"), NOW)
    assert [t.trade_id for t in result.trades] == [11, 12]
    assert [t.is_buyer_maker for t in result.trades] == [True, False]
    assert result.trades[0].trade_time == rfc3339_ms("2026-08-09T21:05:42.514Z")
    assert result.trades[0].event_time == rfc3339_ms("2026-08-09T21:05:48.228Z")
    assert result.trades[0].symbol == "BTC-USD"
    assert result.trades[0].exchange == "coinbase"


def test_snapshot_repeats_after_a_reconnect_are_dropped() -> None:
    parser = CoinbaseParser()
    assert len(parser.parse(frame([trade("2"), trade("1")], 0, "snapshot"), NOW).trades) == 2
    parser.connection_reset()
    again = parser.parse(frame([trade("3"), trade("2"), trade("1")], 0, "snapshot"), NOW)
    assert [t.trade_id for t in again.trades] == [3]
    assert parser.duplicates == 2
    # the same id on another product is a different trade
    assert len(parser.parse(frame([trade("1", product_id="ETH-USD")], 1), NOW).trades) == 1


def test_seen_ids_are_bounded() -> None:
    parser = CoinbaseParser(seen_per_product=2)
    for n in range(1, 4):
        parser.parse(frame([trade(str(n))], n - 1), NOW)
    # id 1 was forgotten, so it is new again; 3 is still remembered
    assert len(parser.parse(frame([trade("1"), trade("3")], 3), NOW).trades) == 1


def test_sequence_jump_is_reported_and_reset_per_connection() -> None:
    parser = CoinbaseParser()
    parser.parse(frame([], 5), NOW)
    gap = parser.parse(frame([], 9), NOW).events
    assert gap[0].kind == SEQUENCE_GAP
    assert gap[0].detail == {"expected": 6, "received": 9}
    parser.connection_reset()
    assert parser.parse(frame([], 0), NOW).events == []


@pytest.mark.parametrize(
    ("bad_trade", "reason"),
    [
        (trade(side="buy"), "side must be BUY or SELL"),
        (trade(trade_id="abc"), "trade_id must be a numeric string"),
        (trade(trade_id=12), "trade_id must be a numeric string"),
        (trade(price="0"), "price must be positive"),
        (trade(size="-1"), "quantity must be positive"),
        (trade(price="NaN"), "price is not finite"),
        (trade(time="yesterday"), "time is not RFC 3339"),
        ({k: v for k, v in trade().items() if k != "size"}, "missing field 'size'"),
    ],
)
def test_bad_trades_go_to_the_dlq_and_good_ones_still_pass(bad_trade: dict[str, object], reason: str) -> None:
    result = CoinbaseParser().parse(frame([bad_trade, trade("99")]), NOW)
    assert [t.trade_id for t in result.trades] == [99]
    (bad,) = result.bad
    assert bad.reason.startswith(reason)
    assert orjson.loads(bad.raw) == bad_trade


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("nope", "malformed JSON"),
        ("42", "message is not a JSON object"),
        ('{"channel":"level2","events":[]}', "unknown channel 'level2'"),
        ('{"channel":"market_trades","events":{}}', "market_trades frame without an events list"),
        ('{"channel":"market_trades","events":[{"type":"update"}]}', "market_trades event without a trades list"),
        ('{"channel":"market_trades","events":[{"type":"update","trades":[5]}]}', "trade is not a JSON object"),
    ],
)
def test_bad_frames(raw: str, reason: str) -> None:
    (bad,) = CoinbaseParser().parse(raw, NOW).bad
    assert bad.reason.startswith(reason)


def test_missing_frame_timestamp_falls_back_to_trade_time() -> None:
    raw = orjson.dumps({"channel": "market_trades", "events": [{"type": "update", "trades": [trade()]}]})
    (record,) = CoinbaseParser().parse(raw, NOW).trades
    assert record.event_time == record.trade_time


def test_control_frames() -> None:
    parser = CoinbaseParser()
    subs = '{"channel":"subscriptions","sequence_num":0,"events":[{"subscriptions":{"market_trades":["BTC-USD"]}}]}'
    assert parser.parse(subs, NOW).events[0].kind == SUBSCRIPTIONS
    assert parser.parse('{"channel":"heartbeats","sequence_num":1,"events":[]}', NOW).events[0].kind == HEARTBEAT
    error = parser.parse('{"type":"error","message":"failure to subscribe"}', NOW).events[0]
    assert error.kind == ERROR
    assert error.detail["message"] == "failure to subscribe"


def test_subscribe_plan() -> None:
    adapter = CoinbaseExchange("wss://advanced-trade-ws.coinbase.com")
    symbols = adapter.normalise_symbols(["btc-usd", "ETH-USD", "BTC-USD"])
    (plan,) = adapter.plans(symbols)
    assert plan.url == "wss://advanced-trade-ws.coinbase.com"
    assert [orjson.loads(m) for m in plan.subscribe] == [
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "market_trades"},
        {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "heartbeats"},
    ]
    with pytest.raises(ValueError, match="not a Coinbase product id"):
        adapter.normalise_symbols(["btcusd"])


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2026-08-09T21:05:42.514318Z", 1786309542514),
        ("2026-08-09T21:05:48.228568804Z", 1786309548228),
        ("2026-08-09T23:05:42.5+02:00", 1786309542500),
        ("2026-08-09 21:05:42z", 1786309542000),
    ],
)
def test_rfc3339(text: str, millis: int) -> None:
    assert rfc3339_ms(text) == millis


@pytest.mark.parametrize("text", ["2026-13-01T00:00:00Z", "2026-01-01T25:00:00Z", "2026-01-01T00:00:61Z", "x", 5])
def test_rfc3339_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="time"):
        rfc3339_ms(text)
