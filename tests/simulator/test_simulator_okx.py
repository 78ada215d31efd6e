"""The OKX simulator on a real socket (subscribe acks, ``trades`` frames replaying the real recording, the text
ping/pong keepalive, errors) and its REST ``history-trades`` (OKX's layout, paging, rate limit), with the OKX
backfiller walking it: a gap filled exactly once, 429/50011 waited out, ids beyond its history counted."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import orjson
import pytest
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.backfill import BackfillWorker
from ingest.exchanges.okx.backfill import OkxBackfiller
from ingest.gaps import Gap
from ingest.metrics import IngestMetrics
from ingest.records import TradeRecord
from simulator.config import SimulatorConfig
from simulator.replay import ReplayFormat, detect_format, read_trades
from simulator.server import BackgroundSimulator
from simulator.synthetic import synthetic_trades
from tests.conftest import DATA
from tests.simulator.test_simulator_support import connect, http_get, recv_json, running

pytestmark = pytest.mark.unit

OKX_RECORDS = list(read_trades(DATA / "okx-ws" / "OKX.ws.1.0"))
SPOT = [r for r in OKX_RECORDS if r.symbol == "BTC-USDT"]
START = 1_700_000_000_000
FIRST_ID = 1_000_000
PATH = "/api/v5/market/history-trades"


def subscribe(ws: websocket.WebSocket, *inst_ids: str, op: str = "subscribe", **extra: Any) -> None:
    args = [{"channel": "trades", "instId": inst_id} for inst_id in inst_ids]
    ws.send(orjson.dumps({"op": op, "args": args, **extra}).decode())


def test_the_replay_reads_the_recordings_trades_in_time_order() -> None:
    # cryptofeed's raw layout; the received frames are read by the registered parser that finds trades in them.
    assert detect_format(DATA / "okx-ws" / "OKX.ws.1.0") is ReplayFormat.CRYPTOFEED_RAW
    assert len(OKX_RECORDS) == 74
    assert [r.trade_id for r in SPOT] == list(range(338476307, 338476376))
    assert {r.exchange for r in OKX_RECORDS} == {"okx"}
    assert [r.trade_time for r in OKX_RECORDS] == sorted(r.trade_time for r in OKX_RECORDS)


def test_subscribe_ack_then_the_recorded_trades_in_okx_frames_aggregated_per_taker_order() -> None:
    with running(iter(OKX_RECORDS), exchange="okx") as sim:
        ws = connect(sim.url + "/ws/v5/public")
        subscribe(ws, "BTC-USDT", id="7")
        ack = recv_json(ws)
        assert {k: ack[k] for k in ("id", "event", "arg")} == {
            "id": "7",
            "event": "subscribe",
            "arg": {"channel": "trades", "instId": "BTC-USDT"},
        }
        assert ack["connId"]
        trades: list[dict[str, str]] = []
        while not trades or int(trades[-1]["tradeId"]) < SPOT[-1].trade_id:
            frame = recv_json(ws)
            assert frame["arg"] == {"channel": "trades", "instId": "BTC-USDT"}
            trades.extend(frame["data"])
        assert_aggregates_of(trades, SPOT)
        assert any("count" in trade for trade in trades)  # the recording has multi-fill taker orders
        ws.send("ping")
        assert ws.recv() == "pong"
        subscribe(ws, "BTC-USDT", op="unsubscribe")
        assert recv_json(ws)["event"] == "unsubscribe"


def assert_aggregates_of(trades: list[dict[str, str]], fills: list[TradeRecord]) -> None:
    """``trades`` (OKX's push items) are ``fills`` exactly, each once: an item with ``count`` n stands for the n
    fills up to its ``tradeId``, all at its time, price and side, ``sz`` their sum."""
    by_id = {r.trade_id: r for r in fills}
    covered: list[int] = []
    for trade in trades:
        last, count = int(trade["tradeId"]), int(trade.get("count", "1"))
        run = [by_id[i] for i in range(last - count + 1, last + 1)]
        covered.extend(r.trade_id for r in run)
        assert {(r.price, r.trade_time, r.is_buyer_maker) for r in run} == {
            (trade["px"], int(trade["ts"]), trade["side"] == "sell")
        }
        assert Decimal(trade["sz"]) == sum(Decimal(r.quantity) for r in run)
        assert trade["instId"] == run[-1].symbol
    assert covered == [r.trade_id for r in fills]


def test_errors_name_the_bad_request_and_keep_the_connection() -> None:
    with running(iter(SPOT[:5]), exchange="okx", symbols=("BTC-USDT",)) as sim:
        ws = connect(sim.url + "/ws/v5/public")
        for bad in ("{nope", "[]", '{"op":"dance","args":[]}', '{"op":"subscribe","args":[]}'):
            ws.send(bad)
            reply = recv_json(ws)
            assert (reply["event"], reply["code"]) == ("error", "60012"), bad
        subscribe(ws, "ETH-USDT")
        assert (recv_json(ws)["code"], "ETH-USDT") == ("60018", "ETH-USDT")
        ws.send(orjson.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}).decode())
        assert "channel:books" in recv_json(ws)["msg"]
        ws.send("ping")
        assert ws.recv() == "pong"


def okx_trades(count: int) -> list[TradeRecord]:
    source = synthetic_trades(["BTC-USDT"], 1000.0, exchange="okx", start_ms=START, seed=5)
    return list(itertools.islice(source, count))


def rest_sim(records: list[TradeRecord], **config: Any) -> BackgroundSimulator:
    sim = BackgroundSimulator(SimulatorConfig(exchange="okx", speed=0, **config), iter(()))
    for record in records:
        sim.simulator.store.add(record)
    return sim


def test_history_trades_answers_like_okx() -> None:
    with rest_sim(okx_trades(300), rest_rate=0.001) as sim:
        base = f"{sim.http_url}{PATH}?instId=BTC-USDT&type=1"
        status, body = http_get(f"{base}&after={FIRST_ID + 10}&limit=3")
        assert (status, body["code"], body["msg"]) == (200, "0", "")
        assert [row["tradeId"] for row in body["data"]] == [str(FIRST_ID + i) for i in (9, 8, 7)]  # newest first
        assert set(body["data"][0]) == {"instId", "tradeId", "px", "sz", "side", "ts"}
        assert http_get(f"{base}&limit=2") == (429, {"code": "50011", "msg": "Too Many Requests", "data": []})
        sim.call(lambda: setattr(sim.simulator.protocol.rest_bucket, "rate", 0))
        assert [r["tradeId"] for r in http_get(f"{base}&limit=2")[1]["data"]] == [
            str(FIRST_ID + 299),
            str(FIRST_ID + 298),
        ]
        assert [r["tradeId"] for r in http_get(f"{base}&before={FIRST_ID + 10}&limit=2")[1]["data"]] == [
            str(FIRST_ID + 12),
            str(FIRST_ID + 11),
        ]
        assert len(http_get(base)[1]["data"]) == 100  # the default and largest page
        assert http_get(f"{base}&after=x")[1]["code"] == "51000"
        assert http_get(f"{sim.http_url}{PATH}?instId=ETH-USDT")[1]["code"] == "51001"
        assert http_get(f"{sim.http_url}{PATH}")[1]["code"] == "50014"
        assert http_get(f"{sim.http_url}/api/v5/market/trades")[0] == 404


def test_a_gap_is_filled_exactly_once_over_history_trades() -> None:
    records = okx_trades(1000)
    by_id = {r.trade_id: r for r in records}
    published: list[TradeRecord] = []

    def publish(page: list[TradeRecord]) -> int:
        published.extend(page)
        return len(page)

    with rest_sim(records, rest_rate=0) as sim:
        backfiller = OkxBackfiller(sim.http_url, min_interval=0, sleep=lambda _s: None, attempts=3)
        metrics = IngestMetrics("okx")
        worker = BackfillWorker(backfiller, publish, lambda *_a: None, metrics, "okx", 100_000, 10)
        assert worker.fill(Gap("BTC-USDT", FIRST_ID + 150, FIRST_ID + 420)) == 271
    # after=421, 321, 221 (each page the 100 ids below it): the third page reaches below the gap.
    assert backfiller.requests == 3
    assert [t.trade_id for t in published] == list(range(FIRST_ID + 150, FIRST_ID + 421))
    for trade in published:
        recorded = by_id[trade.trade_id]
        assert trade._replace(received_at=recorded.received_at, event_time=recorded.event_time) == recorded
    assert (metrics.backfilled, metrics.backfill_abandoned, metrics.backfill_unrecoverable) == (271, 0, 0)


def test_429_with_code_50011_is_waited_out() -> None:
    with rest_sim(okx_trades(300), rest_rate=0.001) as sim:
        bucket = sim.simulator.protocol.rest_bucket
        sim.call(lambda: setattr(bucket, "tokens", 1.0))
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            sim.call(lambda: setattr(bucket, "tokens", 1.0))  # the limit's window has passed

        backfiller = OkxBackfiller(sim.http_url, min_interval=0, sleep=sleep, attempts=3)
        result = backfiller.fetch("BTC-USDT", FIRST_ID + 50, FIRST_ID + 160)  # two requests, one token at a time
        refused = sim.call(lambda: bucket.refused)
    assert result.complete
    assert [t.trade_id for t in result.trades] == list(range(FIRST_ID + 50, FIRST_ID + 161))
    assert (refused, backfiller.rate_limited, waits) == (1, 1, [0.5])


def test_a_200_carrying_code_50011_is_a_rate_limit_too() -> None:
    backfiller = OkxBackfiller("http://unused")
    assert backfiller._limited({"code": "50011", "msg": "Too Many Requests", "data": []}) is not None
    assert backfiller._limited({"code": "0", "msg": "", "data": []}) is None


def test_ids_beyond_its_history_are_counted_unrecoverable() -> None:
    records = okx_trades(600)
    published: list[int] = []

    def publish(page: list[TradeRecord]) -> int:
        published.extend(t.trade_id for t in page)
        return len(page)

    with rest_sim(records, rest_history=200, rest_rate=0) as sim:
        backfiller = OkxBackfiller(sim.http_url, min_interval=0, sleep=lambda _s: None, attempts=3)
        metrics = IngestMetrics("okx")
        worker = BackfillWorker(backfiller, publish, lambda *_a: None, metrics, "okx", 100_000, 10)
        worker.fill(Gap("BTC-USDT", FIRST_ID + 300, FIRST_ID + 450))  # REST reaches back to FIRST_ID + 400
        worker.fill(Gap("BTC-USDT", FIRST_ID + 10, FIRST_ID + 20))
    assert published == list(range(FIRST_ID + 400, FIRST_ID + 451))
    assert (metrics.backfill_unrecoverable, metrics.backfill_unrecoverable_trades) == (2, 100 + 11)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)
ARG = st.fixed_dictionaries({}, optional={"channel": st.sampled_from(["trades", "books"]) | JSON, "instId": JSON})
REQUESTS = JSON | st.fixed_dictionaries(
    {"op": st.sampled_from(["subscribe", "unsubscribe", "login"]) | JSON},
    optional={"args": st.lists(ARG, max_size=3) | JSON, "id": JSON},
)


def test_fuzzed_requests_never_break_the_connection() -> None:
    with running(iter(SPOT[:5]), exchange="okx", symbols=("BTC-USDT",), max_incoming_per_s=0) as sim:
        ws = connect(sim.url + "/ws/v5/public")

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(request=REQUESTS)
        def check(request: Any) -> None:
            ws.send(orjson.dumps(request).decode())
            ws.send("ping")  # its pong proves the connection survived, after every reply to the request
            replies = []
            while (reply := ws.recv()) != "pong":
                replies.append(orjson.loads(reply))
            assert all(r.get("event") in ("subscribe", "unsubscribe", "error") or "data" in r for r in replies)

        check()
