"""Binance frame parser on real recorded frames and hand-built edge cases."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import orjson
import pytest

from ingest.exchanges.base import ACK, ERROR, SHUTDOWN
from ingest.exchanges.binance.adapter import BinanceExchange, parse_frame, trade_from_rest
from ingest.records import InvalidRecordError
from tests.conftest import DATA

pytestmark = pytest.mark.unit

# The ingest clock: after every trade time used here (a trade later than received_at + 60 s is refused).
NOW = 1_800_000_000_000


def recorded_frames(path: Path) -> list[str]:
    """The raw frames of a hftbacktest recording (``<ns> <frame>`` per line)."""
    with gzip.open(path, "rt") as handle:
        return [line.split(" ", 1)[1] for line in handle if line.strip()]


def test_every_recorded_trade_parses_exactly() -> None:
    frames = recorded_frames(DATA / "binance-spot-ws" / "btcusdt_20240808.gz")
    trades = []
    for frame in frames:
        envelope = orjson.loads(frame)
        if envelope.get("stream") != "btcusdt@trade":
            continue
        result = parse_frame(frame, NOW)
        assert result.bad == []
        assert result.events == []
        (trade,) = result.trades
        data = envelope["data"]
        assert (trade.trade_id, trade.price, trade.quantity) == (data["t"], data["p"], data["q"])
        assert (trade.is_buyer_maker, trade.trade_time, trade.event_time) == (data["m"], data["T"], data["E"])
        assert trade.symbol == "BTCUSDT"
        assert trade.exchange == "binance"
        assert trade.received_at == NOW
        trades.append(trade)
    assert len(trades) == 9757
    assert [t.trade_id for t in trades] == list(range(3735683259, 3735683259 + 9757))


def test_other_streams_of_the_recording_are_refused_with_a_reason() -> None:
    frames = recorded_frames(DATA / "binance-spot-ws" / "btcusdt_20240808.gz")
    book = next(f for f in frames if "bookTicker" in f)
    depth = next(f for f in frames if "depthUpdate" in f)
    assert parse_frame(book, NOW).bad[0].reason == "unknown event 'None'"
    assert parse_frame(depth, NOW).bad[0].reason == "unknown event 'depthUpdate'"
    assert parse_frame(depth, NOW).bad[0].raw == depth


def test_flattened_csv_trades_parse_as_bare_events() -> None:
    """The TRXUSDT stream recorded with timeUnit=MICROSECOND, rebuilt as bare millisecond events."""
    with (DATA / "binance-trade-csv" / "trxusdt_trade_stream_2025-03-04.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10_000
    for row in rows:
        event = {
            "e": "trade",
            "E": int(row["EventTime"]) // 1000,
            "s": row["Symbol"],
            "t": int(row["TradeId"]),
            "p": row["Price"],
            "q": row["Quantity"],
            "T": int(row["TransactionTime"]) // 1000,
            "m": row["IsBuyerMarketMaker"] == "1",
            "M": True,
        }
        (trade,) = parse_frame(orjson.dumps(event), NOW).trades
        assert (trade.symbol, trade.price, trade.quantity) == ("TRXUSDT", row["Price"], row["Quantity"])
        assert trade.is_buyer_maker is (row["IsBuyerMarketMaker"] == "1")


def test_new_events_without_order_ids_are_accepted() -> None:
    frame = '{"e":"trade","E":1723161255343,"s":"ETHUSDT","t":7,"p":"2500.10","q":"1.5","T":1723161255342,"m":false}'
    (trade,) = BinanceExchange("ws://x").parser().parse(frame.encode(), NOW).trades
    assert (trade.symbol, trade.trade_id, trade.price, trade.quantity, trade.is_buyer_maker) == (
        "ETHUSDT",
        7,
        "2500.10",
        "1.5",
        False,
    )


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "message is not a JSON object"),
        ('{"stream":"x@trade","data":[1]}', "event is not a JSON object"),
        ('{"foo": 1}', "unknown message: no event type"),
        ('{"e":"aggTrade","s":"BTCUSDT"}', "unknown event 'aggTrade'"),
        ('{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":1,"q":"1","T":1723161255342,"m":true}', "missing field 'p'"),
        (
            '{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1723161255342,"m":true}',
            "price is not a number",
        ),
        (
            '{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":1,"p":"0","q":"1","T":1723161255342,"m":true}',
            "price must be positive",
        ),
        (
            '{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":1,"p":"1","q":"-2","T":1723161255342,"m":true}',
            "quantity must be positive",
        ),
        (
            '{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":1,"p":1.5,"q":"2","T":1723161255342,"m":true}',
            "price must be a decimal string",
        ),
    ],
)
def test_bad_frames_are_refused_with_the_raw_payload(frame: str, reason: str) -> None:
    result = parse_frame(frame, NOW)
    assert result.trades == []
    (bad,) = result.bad
    assert bad.reason.startswith(reason)
    assert bad.raw == frame


def test_invalid_utf8_is_refused_and_kept_readable() -> None:
    result = parse_frame(b'{"e":"trade","s":"\xff"}', NOW)
    assert result.bad[0].reason.startswith("malformed JSON")
    assert "\ufffd" in result.bad[0].raw


def test_control_messages_become_events() -> None:
    assert parse_frame('{"result":null,"id":1}', NOW).events[0].kind == ACK
    error = parse_frame('{"error":{"code":2,"msg":"Invalid request"},"id":3}', NOW).events[0]
    assert error.kind == ERROR
    assert error.detail["id"] == 3
    shutdown = parse_frame('{"stream":"btcusdt@trade","data":{"e":"serverShutdown","E":1}}', NOW).events[0]
    assert shutdown.kind == SHUTDOWN
    assert parse_frame('{"e":"serverShutdown","E":1}', NOW).events[0].kind == SHUTDOWN


def test_rest_rows_become_records() -> None:
    row = {
        "id": 28457,
        "price": "4.00000100",
        "qty": "12.00000000",
        "quoteQty": "48.000012",
        "time": 1723161255342,
        "isBuyerMaker": True,
        "isBestMatch": True,
    }
    trade = trade_from_rest("btcusdt", row, NOW)
    assert (trade.symbol, trade.trade_id, trade.price, trade.quantity) == (
        "BTCUSDT",
        28457,
        "4.00000100",
        "12.00000000",
    )
    assert trade.event_time == trade.trade_time == 1723161255342
    with pytest.raises(InvalidRecordError, match="missing field 'qty'"):
        trade_from_rest("BTCUSDT", {"id": 1, "price": "1", "time": 1723161255342, "isBuyerMaker": True}, NOW)
    with pytest.raises(InvalidRecordError, match="not a JSON object"):
        trade_from_rest("BTCUSDT", [1], NOW)


def test_connection_plans_respect_the_stream_limit() -> None:
    adapter = BinanceExchange("ws://127.0.0.1:9443/")
    symbols = adapter.normalise_symbols(["BTCUSDT", " ethusdt", "btcusdt"])
    assert symbols == ["btcusdt", "ethusdt"]
    (plan,) = adapter.plans(symbols)
    assert plan.url == "ws://127.0.0.1:9443/stream?streams=btcusdt@trade/ethusdt@trade"
    assert plan.subscribe == ()
    many = [f"sym{i}usdt" for i in range(2500)]
    plans = adapter.plans(many)
    assert [len(p.symbols) for p in plans] == [1024, 1024, 452]
    assert plans[1].url.count("@trade") == 1024
    with pytest.raises(ValueError, match="not a Binance symbol"):
        adapter.normalise_symbols(["btc-usdt"])
