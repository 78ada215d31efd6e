"""The OKX v5 ``trades`` parser: every real trade frame of the bundled recording exactly, the documented push
example, control events, refusals, fuzzed frames, the subscribe plan and its keepalive, and the recording's ids."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.exchanges import get
from ingest.exchanges.base import ACK, ERROR, HEARTBEAT
from ingest.exchanges.okx.adapter import OkxExchange, parse_frame, rest_row_id, trade_from_rest
from ingest.gaps import DUPLICATE, GAP, NEXT
from ingest.records import InvalidRecordError, TradeRecord
from tests.conftest import DATA

pytestmark = pytest.mark.unit

OKX_RECORDING = DATA / "okx-ws" / "OKX.ws.1.0"
NOW = 4_100_000_000_000  # a receive time after every trade time used here

#: OKX's documented ``trades`` push example (docs-v5, "WS / Trades channel", Push Data Example), verbatim.
DOC_EXAMPLE = """{
  "arg": {
    "channel": "trades",
    "instId": "BTC-USDT"
  },
  "data": [
    {
      "instId": "BTC-USDT",
      "tradeId": "130639474",
      "px": "42219.9",
      "sz": "0.12060306",
      "side": "buy",
      "ts": "1630048897897",
      "count": "3",
      "source": "0",
      "seqId": 1234
    }
  ]
}"""


def received_frames(path: Path = OKX_RECORDING) -> list[tuple[int, str]]:
    """``(receive ms, frame)`` of every frame the recorded connection received: the ``<epoch s>: <frame>`` lines
    (connects and sent messages start with the URL)."""
    frames = []
    for line in path.read_text().splitlines():
        head, sep, frame = line.partition(": ")
        if sep and head.replace(".", "", 1).isdigit():
            frames.append((int(Decimal(head) * 1000), frame))
    return frames


def trade_frames() -> list[tuple[int, str]]:
    """The recording's ``trades`` data frames."""
    out = []
    for received, frame in received_frames():
        message = json.loads(frame)
        if message.get("arg", {}).get("channel") == "trades" and "data" in message:
            out.append((received, frame))
    return out


def test_the_recording_holds_the_trades_its_readme_says() -> None:
    frames = trade_frames()
    trades = [t for _r, f in frames for t in json.loads(f)["data"]]
    assert (len(frames), len(trades)) == (74, 74)
    assert Counter(t["instId"] for t in trades) == {"BTC-USDT": 69, "BTC-USD-220527": 4, "UNI-USD-SWAP": 1}


def test_every_recorded_trade_frame_parses_exactly() -> None:
    for received, frame in trade_frames():
        result = parse_frame(frame, received)
        assert (result.bad, result.events) == ([], [])
        # Expected values straight from the raw JSON, without the parser: strings kept verbatim, taker side.
        expected = [
            TradeRecord(
                exchange="okx",
                symbol=t["instId"],
                trade_id=int(t["tradeId"]),
                price=t["px"],
                quantity=t["sz"],
                is_buyer_maker=t["side"] == "sell",
                trade_time=int(t["ts"]),
                event_time=int(t["ts"]),
                received_at=received,
            )
            for t in json.loads(frame)["data"]
        ]
        assert result.trades == expected


def test_recorded_ids_are_consecutive_per_instrument() -> None:
    # What the descriptor's consecutive_ids rests on: every step between an instrument's ids is exactly 1.
    ids: dict[str, list[int]] = {}
    for _received, frame in trade_frames():
        for trade in json.loads(frame)["data"]:
            ids.setdefault(trade["instId"], []).append(int(trade["tradeId"]))
    steps = {inst: {b - a for a, b in itertools.pairwise(seq)} for inst, seq in ids.items() if len(seq) > 1}
    assert steps == {"BTC-USDT": {1}, "BTC-USD-220527": {1}}
    assert (ids["BTC-USDT"][0], ids["BTC-USDT"][-1]) == (338476307, 338476375)
    assert get("okx").capabilities.consecutive_ids is True
    assert OkxExchange.consecutive_ids is True


def test_the_documented_push_example_parses_to_the_documented_values() -> None:
    result = parse_frame(DOC_EXAMPLE, NOW)
    assert (result.bad, result.events) == ([], [])
    (trade,) = result.trades
    assert trade == TradeRecord(
        exchange="okx",
        symbol="BTC-USDT",
        trade_id=130639474,  # the last trade id of the aggregation (count 3: ids 130639472..130639474)
        price="42219.9",
        quantity="0.12060306",
        is_buyer_maker=False,  # side "buy": the taker bought
        trade_time=1630048897897,
        event_time=1630048897897,
        received_at=NOW,
    )


def frame_of(*rows: dict[str, str]) -> bytes:
    return orjson.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": list(rows)})


def test_an_aggregated_trade_continues_the_ids_and_a_gap_is_only_below_its_run() -> None:
    # The documented example aggregates 3 fills (ids 130639472..130639474): after 130639471 it is the next trade,
    # not a gap of two; a later aggregate whose run starts beyond the next id leaves a gap below its run only.
    adapter = OkxExchange("wss://ws.okx.com:8443")
    parser, check = adapter.parser(), adapter.continuity()
    single = {
        "instId": "BTC-USDT",
        "tradeId": "130639471",
        "px": "42219.9",
        "sz": "0.1",
        "side": "buy",
        "ts": "1630048897890",
    }
    later = {**single, "tradeId": "130639480", "count": "2", "ts": "1630048897990"}
    statuses = []
    for raw in (frame_of(single), DOC_EXAMPLE, frame_of(later), DOC_EXAMPLE):
        for trade in parser.parse(raw, NOW).trades:
            statuses.append(check.check(trade.symbol, trade.trade_id, trade.trade_time))
            if statuses[-1] == GAP:
                assert check.gap is not None
                assert (check.gap.first, check.gap.last, check.gap.after_time) == (130639475, 130639478, 1630048897897)
                check.advance(trade.symbol, trade.trade_id, trade.trade_time)
    assert statuses == [NEXT, NEXT, GAP, DUPLICATE]
    assert check.last == {"BTC-USDT": 130639480}


def test_without_aggregation_the_id_check_is_the_plain_one() -> None:
    adapter = OkxExchange("wss://ws.okx.com:8443")
    parser, check = adapter.parser(), adapter.continuity()
    statuses = []
    for _received, frame in trade_frames():
        for trade in parser.parse(frame, NOW).trades:
            statuses.append(check.check(trade.symbol, trade.trade_id, trade.trade_time))
    assert statuses == [NEXT] * 74  # the recording: every instrument's ids step by 1


@pytest.mark.parametrize("count", ["0", "-1", 3, "", "1e3", "9999999999"])
def test_a_bad_count_refuses_the_trade(count: Any) -> None:
    row = {
        "instId": "BTC-USDT",
        "tradeId": "5",
        "px": "1",
        "sz": "1",
        "side": "buy",
        "ts": "1630048897897",
        "count": count,
    }
    result = parse_frame(frame_of(row), NOW)
    assert result.trades == []
    assert [("count" in bad.reason) for bad in result.bad] == [True]


def test_events_pong_and_errors() -> None:
    ack = parse_frame('{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a4d3ae55"}', NOW)
    assert [(e.kind, e.detail["arg"]) for e in ack.events] == [(ACK, {"channel": "trades", "instId": "BTC-USDT"})]
    error = parse_frame('{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}', NOW)
    assert [(e.kind, e.detail) for e in error.events] == [(ERROR, {"code": "60012", "msg": "Invalid request"})]
    for pong in ("pong", b"pong"):
        assert [e.kind for e in parse_frame(pong, NOW).events] == [HEARTBEAT]
    for result in (ack, error):
        assert (result.trades, result.bad) == ([], [])


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("{nope", "malformed JSON"),
        ("[1]", "not a JSON object"),
        ('{"arg":{"channel":"books","instId":"BTC-USDT"},"data":[]}', "unknown channel 'books'"),
        ('{"arg":{"channel":"trades"},"data":{}}', "without a data list"),
    ],
)
def test_refused_frames_are_dead_lettered_whole(frame: str, reason: str) -> None:
    result = parse_frame(frame, NOW)
    assert result.trades == []
    assert [(reason in b.reason, b.raw) for b in result.bad] == [(True, frame)]


def test_a_bad_trade_costs_only_itself_and_trades_come_out_oldest_first() -> None:
    good = {"instId": "BTC-USDT", "tradeId": "12", "px": "30000.1", "sz": "0.5", "side": "sell", "ts": "1652459226050"}
    older = {**good, "tradeId": "11"}
    bad_rows: list[tuple[Any, str]] = [
        ({**good, "tradeId": 13}, "tradeId must be a numeric string"),
        ({**good, "tradeId": "-1"}, "tradeId must be a numeric string"),
        ({**good, "side": "BUY"}, "side must be buy or sell"),
        ({**good, "ts": 1652459226050}, "ts must be a string of epoch milliseconds"),
        ({**good, "px": "-1"}, "price"),
        ({k: v for k, v in good.items() if k != "sz"}, "missing field 'sz'"),
        ("x", "not a JSON object"),
    ]
    frame = {"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [good, *[r for r, _ in bad_rows], older]}
    result = parse_frame(orjson.dumps(frame), NOW)
    assert [t.trade_id for t in result.trades] == [11, 12]
    assert result.trades[1].is_buyer_maker is True
    assert len(result.bad) == len(bad_rows)
    for bad, (row, reason) in zip(result.bad, bad_rows, strict=True):
        assert reason in bad.reason
        assert json.loads(bad.raw) == row


def test_rest_rows_are_the_websockets_fields() -> None:
    row = {
        "instId": "BTC-USDT",
        "side": "sell",
        "sz": "0.00001",
        "px": "29963.2",
        "tradeId": "242720720",
        "ts": "1654161646974",
    }
    record = trade_from_rest("BTC-USDT", row, NOW)
    assert (record.trade_id, record.price, record.quantity, record.is_buyer_maker, record.trade_time) == (
        242720720,
        "29963.2",
        "0.00001",
        True,
        1654161646974,
    )
    assert record.event_time == record.trade_time
    assert rest_row_id(row) == 242720720
    assert [rest_row_id(r) for r in ({"tradeId": 5}, {"tradeId": "x"}, [1], {})] == [None, None, None, None]
    with pytest.raises(InvalidRecordError, match="missing field 'px'"):
        trade_from_rest("BTC-USDT", {k: v for k, v in row.items() if k != "px"}, NOW)


def test_the_plan_subscribes_trades_per_instrument_and_pings() -> None:
    adapter = OkxExchange("wss://ws.okx.com:8443/")
    symbols = adapter.normalise_symbols(["btc-usdt", " ETH-USDT ", "BTC-USDT"])
    assert symbols == ["BTC-USDT", "ETH-USDT"]
    (plan,) = adapter.plans(symbols)
    assert plan.url == "wss://ws.okx.com:8443/ws/v5/public"
    assert [json.loads(m) for m in plan.subscribe] == [
        {
            "op": "subscribe",
            "args": [{"channel": "trades", "instId": "BTC-USDT"}, {"channel": "trades", "instId": "ETH-USDT"}],
        }
    ]
    assert (plan.keepalive, plan.keepalive_s) == ("ping", 25.0)
    many = adapter.plans([f"C{i}-USDT" for i in range(250)])[0].subscribe
    assert [len(json.loads(m)["args"]) for m in many] == [100, 100, 50]
    for bad in ("BTCUSDT", "BTC/USDT", "BTC-USD-220527"):
        with pytest.raises(ValueError, match="not a Okx instrument id"):
            adapter.normalise_symbols([bad])


# --------------------------------------------------------------------------------------------- fuzz
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
okx_keys = st.sampled_from(["instId", "tradeId", "px", "sz", "side", "ts", "count", "arg", "data", "event", "code"])
nearly_valid = st.dictionaries(okx_keys, json_values, max_size=8)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        json_values.map(json.dumps),
        nearly_valid.map(json.dumps),
        nearly_valid.map(lambda v: json.dumps({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [v]})),
        nearly_valid.map(lambda v: json.dumps({"arg": v, "data": v, "event": v.get("event")})),
    )
)
def test_fuzzed_frames_never_raise(raw: str | bytes) -> None:
    result = parse_frame(raw, NOW)
    assert all(isinstance(trade, TradeRecord) for trade in result.trades)
    assert all(bad.reason and isinstance(bad.raw, str) for bad in result.bad)
    assert [t.trade_id for t in result.trades] == sorted(t.trade_id for t in result.trades)
