"""The Bybit simulator on a real socket (subscribe acks, ``publicTrade`` frames of relabelled real trades, the
``{"op":"ping"}`` keepalive, errors) and its REST ``recent-trade`` (Bybit's layout, the newest 60 only, the rate
limit), with the Bybit backfiller reading it: a catch-up brings every trade since the last one seen, and reports the
window it cannot reach."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import orjson
import pytest
import websocket

from ingest.backfill import BackfillWorker, Probe
from ingest.exchanges.bybit.backfill import BybitBackfiller
from ingest.metrics import IngestMetrics
from ingest.records import TradeRecord
from simulator.config import SimulatorConfig
from simulator.feed import for_exchange
from simulator.replay import read_trades
from simulator.server import BackgroundSimulator
from simulator.synthetic import synthetic_trades
from tests.ingest.pipeline import BTC_0808
from tests.simulator.test_simulator_support import connect, http_get, recv_json, running

PATH = "/v5/market/recent-trade"
START = 1_700_000_000_000
FIRST_ID = 1_000_000


def subscribe(ws: websocket.WebSocket, *symbols: str, op: str = "subscribe", **extra: Any) -> None:
    ws.send(orjson.dumps({"op": op, "args": [f"publicTrade.{s}" for s in symbols], **extra}).decode())


def test_relabelled_real_trades_in_bybit_frames_and_the_log_says_so(caplog: pytest.LogCaptureFixture) -> None:
    trades = list(itertools.islice(for_exchange(read_trades(BTC_0808), "bybit"), 200))
    with caplog.at_level(logging.WARNING, logger="simulator.bybit"), running(iter(trades), exchange="bybit") as sim:
        ws = connect(sim.url + "/v5/public/spot")
        subscribe(ws, "BTCUSDT", req_id="7")
        ack = recv_json(ws)
        assert {k: ack[k] for k in ("success", "ret_msg", "req_id", "op")} == {
            "success": True,
            "ret_msg": "subscribe",
            "req_id": "7",
            "op": "subscribe",
        }
        got: list[dict[str, Any]] = []
        while len(got) < len(trades):
            frame = recv_json(ws)
            assert (frame["topic"], frame["type"]) == ("publicTrade.BTCUSDT", "snapshot")
            assert frame["ts"] == frame["data"][-1]["T"]
            got.extend(frame["data"])
        assert [(g["i"], g["T"], g["p"], g["v"], g["S"] == "Sell") for g in got] == [
            (str(t.trade_id), t.trade_time, t.price, t.quantity, t.is_buyer_maker) for t in trades
        ]
        seqs = [g["seq"] for g in got]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        ws.send('{"op":"ping","req_id":"p"}')
        pong = recv_json(ws)
        assert (pong["ret_msg"], pong["op"], pong["req_id"]) == ("pong", "ping", "p")
    assert any("relabelled into Bybit's v5 layout" in r.message for r in caplog.records)


def test_errors_name_the_bad_request_and_keep_the_connection() -> None:
    with running(iter([]), exchange="bybit", symbols=["BTCUSDT"]) as sim:
        ws = connect(sim.url + "/v5/public/spot")
        subscribe(ws, *[f"S{n}USDT" for n in range(11)])
        assert recv_json(ws)["ret_msg"] == "error:args size >10"
        subscribe(ws, "ETHUSDT")
        reply = recv_json(ws)
        assert (reply["success"], reply["ret_msg"]) == (False, "Invalid symbol :[publicTrade.ETHUSDT]")
        ws.send("{nope")
        assert recv_json(ws)["success"] is False
        ws.send('{"op":"ping"}')
        assert recv_json(ws)["ret_msg"] == "pong"


def bybit_trades(count: int) -> list[TradeRecord]:
    source = synthetic_trades(["BTCUSDT"], 1000.0, exchange="bybit", start_ms=START, seed=5)
    return list(itertools.islice(source, count))


def rest_sim(records: list[TradeRecord], **config: Any) -> BackgroundSimulator:
    sim = BackgroundSimulator(SimulatorConfig(exchange="bybit", speed=0, **config), iter(()))
    for record in records:
        sim.simulator.store.add(record)
    return sim


def test_recent_trade_answers_like_bybit() -> None:
    with rest_sim(bybit_trades(300), rest_rate=0.001) as sim:
        base = f"{sim.http_url}{PATH}?category=spot&symbol=BTCUSDT"
        status, body = http_get(f"{base}&limit=3")
        assert (status, body["retCode"], body["retMsg"], body["result"]["category"]) == (200, 0, "OK", "spot")
        rows = body["result"]["list"]
        assert [r["execId"] for r in rows] == [str(FIRST_ID + i) for i in (299, 298, 297)]  # newest first
        assert set(rows[0]) == {
            "execId",
            "symbol",
            "price",
            "size",
            "side",
            "time",
            "isBlockTrade",
            "isRPITrade",
            "seq",
        }
        assert http_get(f"{base}&limit=2")[1]["retCode"] == 10006  # past the rate limit: "Too many visits!"
        sim.call(lambda: setattr(sim.simulator.protocol.rest_bucket, "rate", 0))
        assert len(http_get(base)[1]["result"]["list"]) == 60  # the default and largest answer on spot
        assert http_get(f"{base}&limit=61")[1]["retCode"] == 10001
        assert http_get(f"{sim.http_url}{PATH}?category=linear&symbol=BTCUSDT")[1]["retCode"] == 10001
        assert http_get(f"{sim.http_url}{PATH}?category=spot&symbol=ETHUSDT")[1]["retCode"] == 10001
        assert http_get(f"{sim.http_url}/v5/market/kline")[0] == 404


def test_the_backfiller_catches_up_and_reports_what_it_cannot_reach(caplog: pytest.LogCaptureFixture) -> None:
    records = bybit_trades(200)
    published: list[TradeRecord] = []

    def publish(page: list[TradeRecord]) -> int:
        published.extend(page)
        return len(page)

    with rest_sim(records, rest_rate=0) as sim:
        metrics = IngestMetrics("bybit")
        client = BybitBackfiller(sim.http_url, min_interval=0, sleep=lambda _s: None, attempts=2)
        worker = BackfillWorker(client, publish, lambda *_a: None, metrics, "bybit", 100_000, 10)
        seen = records[170]
        worker.fill_tail(Probe("BTCUSDT", seen.trade_id, seen.trade_time))
        assert [t.trade_id for t in published if t.trade_id > seen.trade_id] == [t.trade_id for t in records[171:]]
        assert metrics.backfill_unrecoverable == 0
        published.clear()
        old, first_live = records[20], records[190]
        with caplog.at_level(logging.ERROR, logger="ingest.backfill"):
            worker.fill_tail(Probe("BTCUSDT", old.trade_id, old.trade_time, first_live.trade_time))
    # From the oldest row served up to the first live trade: the later rows are the live stream's.
    assert [t.trade_id for t in published] == [t.trade_id for t in records[140:191]]
    assert metrics.backfill_unrecoverable == 1
    (lost,) = [r for r in caplog.records if "may be lost" in r.message]
    # Bounded by the oldest row served (records[140]), not by the first live trade, which came later.
    assert (lost.after_time, lost.before_time) == (old.trade_time, records[140].trade_time)  # type: ignore[attr-defined]


def test_a_catch_up_publishes_nothing_newer_than_its_connections_first_trade(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The connection that brought records[100] dropped too before REST answered, and the market went on to
    # records[199]: the newest 60 rows (140..199) lie beyond the next hole (after the dropped connection's last
    # trade). Publishing them would move the id check past that hole, whose own catch-up would then start after
    # them, leaving its older trades lost outside every reported window (a chaos run lost 82 of 3,000 so).
    records = bybit_trades(200)
    published: list[TradeRecord] = []

    def publish(page: list[TradeRecord]) -> int:
        published.extend(page)
        return len(page)

    with rest_sim(records, rest_rate=0) as sim:
        metrics = IngestMetrics("bybit")
        client = BybitBackfiller(sim.http_url, min_interval=0, sleep=lambda _s: None, attempts=2)
        worker = BackfillWorker(client, publish, lambda *_a: None, metrics, "bybit", 100_000, 10)
        seen, first_live = records[20], records[100]
        with caplog.at_level(logging.ERROR, logger="ingest.backfill"):
            assert worker.fill_tail(Probe("BTCUSDT", seen.trade_id, seen.trade_time, first_live.trade_time)) == 0
            # REST reaches back to records[140], after the first live trade: the window is the whole hole.
            assert published == []
            (lost,) = [r for r in caplog.records if "may be lost" in r.message]
            assert (lost.after_time, lost.before_time) == (seen.trade_time, first_live.trade_time)  # type: ignore[attr-defined]
            # Where REST does reach the last trade seen, the hole's trades come back and nothing after it.
            seen, first_live = records[150], records[180]
            worker.fill_tail(Probe("BTCUSDT", seen.trade_id, seen.trade_time, first_live.trade_time))
    # From the last trade seen to the first live one, both included (the id check drops the repeats).
    assert [t.trade_id for t in published] == [t.trade_id for t in records[150:181]]
    assert metrics.backfill_unrecoverable == 1


def test_a_catch_up_that_cannot_run_reports_its_window(caplog: pytest.LogCaptureFixture) -> None:
    # A reconnect's catch-up has no later turn (a quiet symbol's probe has): failing, not queued, or dropped at stop,
    # what it was to fetch is reported as possibly lost, never silently.
    records = bybit_trades(10)
    seen, first_live = records[2], records[8]
    with rest_sim(records, rest_rate=0) as sim:
        url = sim.http_url
    metrics = IngestMetrics("bybit")
    client = BybitBackfiller(url, min_interval=0, sleep=lambda _s: None, attempts=1)  # the simulator is gone
    worker = BackfillWorker(client, lambda page: len(page), lambda *_a: None, metrics, "bybit", 100_000, 1)
    catch_up = Probe("BTCUSDT", seen.trade_id, seen.trade_time, first_live.trade_time)
    quiet = Probe("BTCUSDT", seen.trade_id, seen.trade_time)
    with caplog.at_level(logging.ERROR, logger="ingest.backfill"):
        assert worker.fill_tail(catch_up) == 0
        assert worker.fill_tail(quiet) == 0  # tried again later: nothing reported
        worker._queue.put_nowait(quiet)  # the queue (size 1) is full
        assert worker.probe(catch_up) is False
        assert worker.probe(quiet) is False
        worker.stop()  # drops the queued quiet probe: nothing reported
        assert worker.probe(catch_up) is False
    windows = [r for r in caplog.records if "may be lost" in r.message]
    assert [r.message.split(": ", 1)[1].split(":")[0] for r in windows] == [
        "the catch-up failed",
        "the backfill queue is full (INGEST_BACKFILL_QUEUE)",
        "ingest is stopping",
    ]
    assert all((r.after_time, r.before_time) == (seen.trade_time, first_live.trade_time) for r in windows)  # type: ignore[attr-defined]
    assert metrics.backfill_unrecoverable == 3
