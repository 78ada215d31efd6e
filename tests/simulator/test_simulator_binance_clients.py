"""What third-party Binance clients (cryptofeed, ccxt) read from the simulator: ``@aggTrade`` streams in Binance's
field layout and ``/api/v3/exchangeInfo`` for the replayed symbols."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest

from ingest.records import TradeRecord
from simulator.binance import encode_agg_trade, symbol_info
from simulator.feed import replay_source
from simulator.replay import read_trades
from tests.simulator.test_simulator_support import BTC_0808, TRX_CSV, connect, http_get, recv_json, running

pytestmark = pytest.mark.unit

RECORDS = list(itertools.islice(read_trades(BTC_0808), 300))


def agg_of(record: TradeRecord, scale: int = 1) -> dict[str, Any]:
    return {
        "e": "aggTrade",
        "E": record.event_time * scale,
        "s": record.symbol,
        "a": record.trade_id,
        "p": record.price,
        "q": record.quantity,
        "f": record.trade_id,
        "l": record.trade_id,
        "T": record.trade_time * scale,
        "m": record.is_buyer_maker,
        "M": True,
    }


def test_agg_trade_raw_and_combined_streams_carry_every_trade_in_binance_layout() -> None:
    with running(iter(RECORDS)) as sim:
        raw = connect(sim.url + "/ws/btcusdt@aggTrade")
        assert [recv_json(raw) for _ in RECORDS] == [agg_of(r) for r in RECORDS]
    with running(iter(RECORDS)) as sim:
        combined = connect(sim.url + "/stream?streams=btcusdt@aggTrade&timeUnit=MICROSECOND")
        frames = [recv_json(combined) for _ in RECORDS]
        assert {f["stream"] for f in frames} == {"btcusdt@aggTrade"}
        assert [f["data"] for f in frames] == [agg_of(r, 1000) for r in RECORDS]
        # the exact bytes, field order included (clients that slice frames rely on Binance's order)
        assert encode_agg_trade(RECORDS[0]).startswith(b'{"e":"aggTrade","E":')


def test_trade_and_agg_trade_of_one_symbol_on_one_connection_and_unsubscribing_one() -> None:
    with running(iter(RECORDS), max_incoming_per_s=0) as sim:
        ws = connect(sim.url + "/stream?streams=btcusdt@trade/btcusdt@aggTrade")
        first = [recv_json(ws) for _ in range(20)]
        # each trade once per stream, @trade first (subscription order)
        assert [f["stream"] for f in first] == ["btcusdt@trade", "btcusdt@aggTrade"] * 10
        assert [f["data"]["t"] for f in first[::2]] == [f["data"]["a"] for f in first[1::2]]
        ws.send('{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":1}')
        ws.send('{"method":"LIST_SUBSCRIPTIONS","id":2}')
        after_reply: list[dict[str, Any]] | None = None
        while True:
            frame = recv_json(ws)
            if frame.get("id") == 1:
                assert frame == {"result": None, "id": 1}
                after_reply = []
            elif frame.get("id") == 2:
                assert frame == {"result": ["btcusdt@aggTrade"], "id": 2}
                break
            elif after_reply is not None:
                after_reply.append(frame)
        # whatever flows after the reply is @aggTrade only (the symbol stays subscribed through its other stream)
        assert after_reply is not None
        assert {f["stream"] for f in after_reply} <= {"btcusdt@aggTrade"}
        # with its last stream gone the symbol leaves the feed: nothing but the replies comes any more
        ws.send('{"method":"UNSUBSCRIBE","params":["btcusdt@aggTrade"],"id":3}')
        ws.send('{"method":"LIST_SUBSCRIPTIONS","id":4}')
        while (frame := recv_json(ws)).get("id") != 3:
            assert frame["stream"] == "btcusdt@aggTrade"
        assert recv_json(ws) == {"result": [], "id": 4}


def test_exchange_info_lists_the_replayed_symbols_in_binance_layout() -> None:
    records, pace, names = replay_source([BTC_0808, TRX_CSV])
    with running(records, pace=pace, symbols=tuple(names)) as sim:
        status, body = http_get(sim.http_url + "/api/v3/exchangeInfo")
        assert status == 200
        assert body["timezone"] == "UTC"
        assert body["serverTime"] > 1_700_000_000_000
        assert {limit["rateLimitType"] for limit in body["rateLimits"]} == {"REQUEST_WEIGHT", "ORDERS", "RAW_REQUESTS"}
        assert body["exchangeFilters"] == []
        by_name = {s["symbol"]: s for s in body["symbols"]}
        assert set(by_name) == {"BTCUSDT", "TRXUSDT"}
        btc = by_name["BTCUSDT"]
        assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == ("TRADING", "BTC", "USDT")
        assert btc["filters"][0]["filterType"] == "PRICE_FILTER"
        assert btc["filters"][1]["filterType"] == "LOT_SIZE"
        assert btc["permissionSets"] == [["SPOT"]]
        status, body = http_get(sim.http_url + "/api/v3/exchangeInfo?symbol=trxusdt")
        assert [s["symbol"] for s in body["symbols"]] == ["TRXUSDT"]
        status, body = http_get(sim.http_url + '/api/v3/exchangeInfo?symbols=["BTCUSDT","TRXUSDT"]')
        assert [s["symbol"] for s in body["symbols"]] == ["BTCUSDT", "TRXUSDT"]
        assert http_get(sim.http_url + "/api/v3/exchangeInfo?symbol=ETHUSDT") == (
            400,
            {"code": -1121, "msg": "Invalid symbol."},
        )
        assert http_get(sim.http_url + "/api/v3/exchangeInfo?symbols=BTCUSDT")[1]["code"] == -1100


def test_symbol_info_tick_and_lot_sizes_fit_every_recorded_trade() -> None:
    info = symbol_info("BTCUSDT", RECORDS)
    tick = Decimal(info["filters"][0]["tickSize"])
    lot = Decimal(info["filters"][1]["stepSize"])
    assert tick == Decimal("0.01")  # Binance pads BTCUSDT prices to 8 digits; the tick is a cent
    for record in RECORDS:
        assert Decimal(record.price) % tick == 0
        assert Decimal(record.quantity) % lot == 0
    empty = symbol_info("ETHBTC", [])
    assert (empty["baseAsset"], empty["quoteAsset"]) == ("ETH", "BTC")
    assert empty["filters"][0]["tickSize"] == "0.01000000"
