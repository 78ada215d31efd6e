"""Kraken v2 parser: documented frames, exact number text, control messages, refusals."""

from __future__ import annotations

import orjson
import pytest

from ingest.exchanges.base import ACK, ERROR, HEARTBEAT, STATUS
from ingest.exchanges.kraken.adapter import KrakenExchange, parse_frame

pytestmark = pytest.mark.unit

NOW = 1_695_628_200_000
# From Kraken's v2 documentation (trade channel, snapshot), extended with a second trade.
SNAPSHOT = """{"channel":"trade","type":"snapshot","data":[
 {"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,
  "timestamp":"2023-09-25T07:48:36.925533Z"},
 {"symbol":"MATIC/USD","side":"sell","price":0.00000010,"qty":40,"ord_type":"market","trade_id":4665847,
  "timestamp":"2023-09-25T07:49:37.708706Z"}]}"""


def test_snapshot_keeps_the_numbers_exact() -> None:
    result = KrakenExchange("ws://x").parser().parse(SNAPSHOT, NOW)
    assert result.bad == []
    first, second = result.trades
    assert (first.symbol, first.trade_id, first.price, first.quantity) == ("MATIC/USD", 4665846, "0.5147", "6423.46326")
    assert first.is_buyer_maker is False
    assert second.is_buyer_maker is True
    assert (second.price, second.quantity) == ("0.00000010", "40")
    assert first.trade_time == first.event_time == 1695628116925
    assert first.exchange == "kraken"
    assert first.received_at == NOW


def test_control_frames() -> None:
    status = '{"channel":"status","type":"update","data":[{"api_version":"v2","system":"online","version":"2.0.0"}]}'
    assert parse_frame(status, NOW).events[0].kind == STATUS
    assert parse_frame('{"channel":"heartbeat"}', NOW).events[0].kind == HEARTBEAT
    ack = '{"method":"subscribe","result":{"channel":"trade","symbol":"BTC/USD"},"success":true,"time_in":"x"}'
    assert parse_frame(ack, NOW).events[0].kind == ACK
    nack = '{"method":"subscribe","error":"Currency pair not supported XXX/USD","success":false}'
    event = parse_frame(nack, NOW).events[0]
    assert event.kind == ERROR
    assert "not supported" in str(event.detail["error"])


def good(**overrides: object) -> dict[str, object]:
    trade: dict[str, object] = {
        "symbol": "BTC/USD",
        "side": "sell",
        "price": 26000.1,
        "qty": 0.5,
        "ord_type": "market",
        "trade_id": 10,
        "timestamp": "2023-09-25T07:49:37.708706Z",
    }
    trade.update(overrides)
    return trade


@pytest.mark.parametrize(
    ("bad_trade", "reason"),
    [
        (good(side="SELL"), "side must be buy or sell"),
        (good(price="26000.1"), "price must be a JSON number"),
        (good(qty=True), "qty must be a JSON number"),
        (good(price=0), "price must be positive"),
        (good(qty=-1.5), "quantity must be positive"),
        (good(trade_id=-3), "trade_id must be a non-negative"),
        (good(timestamp="later"), "time is not RFC 3339"),
        ({k: v for k, v in good().items() if k != "qty"}, "missing field 'qty'"),
        (7, "trade is not a JSON object"),
    ],
)
def test_bad_trades_are_refused_and_the_rest_published(bad_trade: object, reason: str) -> None:
    raw = orjson.dumps({"channel": "trade", "type": "update", "data": [bad_trade, good(trade_id=11)]})
    result = parse_frame(raw, NOW)
    assert [t.trade_id for t in result.trades] == [11]
    (bad,) = result.bad
    assert bad.reason.startswith(reason)
    assert orjson.loads(bad.raw) == bad_trade


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{", "malformed JSON"),
        ('{"channel":"trade","data":[{"price":NaN}]}', "malformed JSON"),
        ("[]", "message is not a JSON object"),
        ('{"channel":"book","data":[]}', "unknown channel 'book'"),
        ('{"channel":"trade","data":{}}', "trade frame without a data list"),
        ("9" * 5000, "malformed JSON"),
    ],
)
def test_bad_frames(raw: str, reason: str) -> None:
    (bad,) = parse_frame(raw, NOW).bad
    assert bad.reason.startswith(reason)


def test_huge_integers_in_a_trade_still_dead_letter() -> None:
    raw = '{"channel":"trade","data":[{"trade_id":' + "1" * 30 + "}]}"
    (bad,) = parse_frame(raw, NOW).bad
    assert bad.reason == "missing field 'side'"
    assert "1" * 30 in bad.raw


def test_subscribe_plan() -> None:
    adapter = KrakenExchange("wss://ws.kraken.com/v2")
    symbols = adapter.normalise_symbols(["btc/usd", "ETH/USD"])
    (plan,) = adapter.plans(symbols)
    assert plan.url == "wss://ws.kraken.com/v2"
    assert orjson.loads(plan.subscribe[0]) == {
        "method": "subscribe",
        "params": {"channel": "trade", "symbol": ["BTC/USD", "ETH/USD"], "snapshot": True},
    }
    with pytest.raises(ValueError, match="not a Kraken pair"):
        adapter.normalise_symbols(["BTCUSD"])
    assert adapter.consecutive_ids
    assert adapter.supports_backfill  # REST /0/public/Trades, by time (ingest.exchanges.kraken.backfill)


def test_trades_come_out_oldest_first() -> None:
    raw = orjson.dumps({"channel": "trade", "type": "snapshot", "data": [good(trade_id=12), good(trade_id=11)]})
    assert [t.trade_id for t in parse_frame(raw, NOW).trades] == [11, 12]
