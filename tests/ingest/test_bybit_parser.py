"""The Bybit v5 ``publicTrade`` parser, its plan, its REST rows and the id check of an exchange whose ids reveal no
gap (:class:`ingest.gaps.RecentIdContinuity`). No real Bybit recording is available offline: the frames here are the
documentation's examples, and the expected values are worked out from the raw JSON with the standard library."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.exchanges import get
from ingest.exchanges.base import ACK, ERROR, HEARTBEAT
from ingest.exchanges.bybit.adapter import BybitExchange, parse_frame, trade_from_rest
from ingest.exchanges.bybit.backfill import row_id
from ingest.gaps import DUPLICATE, NEXT, RecentIdContinuity

pytestmark = pytest.mark.unit

NOW = 4_100_000_000_000
#: v5 docs, "WebSocket Stream / Public / Trade", response example
DOC_EXAMPLE = (
    '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,"s":"BTCUSDT",'
    '"S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false,'
    '"seq":1783284617}]}'
)


def frame_of(*rows: dict[str, Any], ts: int = 1723161600000) -> str:
    return orjson.dumps({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": ts, "data": list(rows)}).decode()


def row(i: str, t: int = 1723161600000, side: str = "Buy", **extra: Any) -> dict[str, Any]:
    return {"T": t, "s": "BTCUSDT", "S": side, "v": "0.5", "p": "60000.10", "i": i, "BT": False, "seq": 7, **extra}


def test_the_documented_example_parses_to_the_documented_values() -> None:
    (trade,) = parse_frame(DOC_EXAMPLE, NOW).trades
    raw = json.loads(DOC_EXAMPLE)["data"][0]
    key = int.from_bytes(hashlib.blake2b(raw["i"].encode(), digest_size=8).digest(), "big") >> 1
    assert trade.trade_id == key
    assert trade.trade_ref == raw["i"]
    assert (trade.exchange, trade.symbol, trade.price, trade.quantity) == ("bybit", "BTCUSDT", "16578.50", "0.001")
    assert trade.is_buyer_maker is False  # S=Buy: the buyer was the taker
    assert (trade.trade_time, trade.event_time, trade.received_at) == (1672304486865, 1672304486868, NOW)


def test_a_numeric_spot_id_is_the_trade_id_itself() -> None:
    (trade,) = parse_frame(frame_of(row("2290000000036455162", side="Sell")), NOW).trades
    assert (trade.trade_id, trade.trade_ref, trade.is_buyer_maker) == (2290000000036455162, None, True)


def test_replies_are_events() -> None:
    pong = parse_frame('{"success":true,"ret_msg":"pong","conn_id":"c","req_id":"","op":"ping"}', NOW)
    assert [e.kind for e in pong.events] == [HEARTBEAT]
    ack = parse_frame('{"success":true,"ret_msg":"subscribe","conn_id":"c","req_id":"","op":"subscribe"}', NOW)
    assert [(e.kind, e.detail["op"]) for e in ack.events] == [(ACK, "subscribe")]
    error = parse_frame('{"success":false,"ret_msg":"Invalid symbol :[publicTrade.X]","op":"subscribe"}', NOW)
    assert [(e.kind, e.detail["ret_msg"]) for e in error.events] == [(ERROR, "Invalid symbol :[publicTrade.X]")]
    assert [pong.trades, pong.bad, ack.bad, error.bad] == [[], [], [], []]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("{nope", "malformed JSON"),
        ("[1]", "not a JSON object"),
        ('{"topic":"orderbook.50.BTCUSDT","data":{}}', "unknown topic"),
        ('{"topic":"publicTrade.BTCUSDT","data":{}}', "without a data list"),
    ],
)
def test_refused_frames_are_dead_lettered_whole(frame: str, reason: str) -> None:
    result = parse_frame(frame, NOW)
    assert not result.trades
    assert [reason in bad.reason for bad in result.bad] == [True]


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        (row("1", side="buy"), "side must be Buy or Sell"),
        (row(""), "trade id must be a non-empty string"),
        (row("a b"), "trade_ref must be up to 64 printable ASCII"),
        (row("x" * 65), "trade_ref must be up to 64 printable ASCII"),
        ({**row("1"), "T": "soon"}, "trade time must be epoch milliseconds"),
        ({k: v for k, v in row("1").items() if k != "p"}, "missing field 'p'"),
        (row("1") | {"v": "-1"}, "quantity must be positive"),
    ],
)
def test_a_bad_trade_costs_only_itself(bad_row: dict[str, Any], reason: str) -> None:
    result = parse_frame(frame_of(row("5"), bad_row, row("6")), NOW)
    assert [t.trade_id for t in result.trades] == [5, 6]
    assert len(result.bad) == 1
    assert reason in result.bad[0].reason


def test_rest_rows_are_the_same_trades() -> None:
    rest = {"execId": "2290000000036455162", "symbol": "BTCUSDT", "price": "17440", "size": "0.0002", "side": "Sell"}
    trade = trade_from_rest("BTCUSDT", {**rest, "time": "1673437259395", "isBlockTrade": False}, NOW)
    assert (trade.trade_id, trade.price, trade.is_buyer_maker, trade.trade_time) == (
        2290000000036455162,
        "17440",
        True,
        1673437259395,
    )
    assert trade.event_time == trade.trade_time  # REST carries no event time
    uuid_row = {**rest, "execId": "5706445b-8543-59bc-8988-93e0f4a3f0f9", "time": "1671970297430"}
    assert row_id(uuid_row) == trade_from_rest("BTCUSDT", uuid_row, NOW).trade_id
    assert row_id({"execId": 3}) is None


def test_the_plan_subscribes_ten_topics_a_message_and_pings() -> None:
    adapter = BybitExchange("wss://stream.bybit.com/")
    symbols = adapter.normalise_symbols([f"c{n}usdt" for n in range(12)] + ["C0USDT"])
    assert symbols[:2] == ["C0USDT", "C1USDT"]
    assert len(symbols) == 12  # the repeat left out
    (plan,) = adapter.plans(symbols)
    assert plan.url == "wss://stream.bybit.com/v5/public/spot"
    assert [len(json.loads(m)["args"]) for m in plan.subscribe] == [10, 2]
    assert json.loads(plan.subscribe[0]) == {"op": "subscribe", "args": [f"publicTrade.C{n}USDT" for n in range(10)]}
    assert (json.loads(plan.keepalive or ""), plan.keepalive_s) == ({"op": "ping"}, 20.0)
    with pytest.raises(ValueError, match="spot symbol"):
        adapter.normalise_symbols(["BTC-USDT"])
    assert isinstance(adapter.continuity(), RecentIdContinuity)
    assert get("bybit").capabilities.rest_reach == 60


def test_recent_ids_are_repeats_and_nothing_is_ever_a_gap() -> None:
    check = RecentIdContinuity(memory=3)
    assert [check.check("S", i, t) for i, t in [(50, 10), (7, 11), (99, 11)]] == [NEXT, NEXT, NEXT]
    assert check.check("S", 7, 11) == DUPLICATE  # a repeat, by id: these ids have no order
    assert check.check("S", 8, 12) == NEXT
    assert (check.last["S"], check.times["S"]) == (8, 12)
    assert check.check("S", 1, 9) == DUPLICATE  # older than the trade forgotten (memory 3): taken as seen
    # At the forgotten trade's own millisecond: kept (a repeat costs a duplicate the natural key refuses in storage;
    # dropping could lose a trade).
    assert check.check("S", 50, 10) == NEXT
    assert check.check("S", 2, 11) == NEXT  # as old as a remembered trade: new, since its id is not remembered
    assert check.advance("S", 2, 11) is False
    assert check.check("T", 7, 1) == NEXT  # per symbol
    assert check.gap is None


def test_an_older_trade_does_not_move_the_last_trade_seen_back() -> None:
    # A reconnect's catch-up publishes trades older than the live ones already seen: the next catch-up must still
    # start after the newest trade seen, or its window would begin before it.
    check = RecentIdContinuity()
    assert [check.check("S", i, t) for i, t in [(10, 100), (30, 300), (20, 200)]] == [NEXT, NEXT, NEXT]
    assert (check.last["S"], check.times["S"]) == (30, 300)
    assert check.check("S", 31, 300) == NEXT  # the same millisecond, later: it is the newest
    assert check.last["S"] == 31


def test_a_resumed_symbol_takes_what_is_older_than_its_last_trade_as_repeats() -> None:
    check = RecentIdContinuity()
    check.seed("S", 40, 1000)
    assert check.check("S", 40, 1000) == DUPLICATE
    assert check.check("S", 39, 999) == DUPLICATE
    assert check.check("S", 41, 1000) == NEXT  # the same millisecond: cannot be told apart, kept


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_fuzzed_frames_never_raise(raw: str | bytes) -> None:
    parse_frame(raw, NOW)


@given(st.dictionaries(st.sampled_from(["T", "s", "S", "v", "p", "i", "seq"]), st.from_type(object) | st.text()))
def test_fuzzed_trades_never_raise(item: dict[str, Any]) -> None:
    # json, not orjson: the input may hold integers beyond 64 bits, which the parser must refuse, not the test.
    parse_frame(json.dumps({"topic": "publicTrade.BTCUSDT", "ts": 1, "data": [item]}, default=str), NOW)
