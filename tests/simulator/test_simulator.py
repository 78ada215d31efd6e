"""The Binance simulator on a real socket: stream paths, control methods, limits, pings, REST backfill, faults,
looping, synthetic trades, and the ``simulate_exchange`` command as a child process."""

from __future__ import annotations

import itertools
import logging
import signal
import socket
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
import websocket
from django.core.management import CommandError, call_command

from ingest.records import TradeRecord
from simulator.config import SimulatorConfig
from simulator.feed import looped, replay_source
from simulator.management.commands.simulate_exchange import build_source
from simulator.replay import read_trades
from simulator.server import BackgroundSimulator
from simulator.synthetic import synthetic_trades
from tests.conftest import ChildProcess, manage, wait_for
from tests.simulator.test_simulator_support import BTC_0808, TRX_CSV, connect, http_get, recv_json, running

pytestmark = pytest.mark.unit

RECORDS_0808 = list(read_trades(BTC_0808))


def event_of(record: TradeRecord, scale: int = 1) -> dict[str, Any]:
    return {
        "e": "trade",
        "E": record.event_time * scale,
        "s": record.symbol,
        "t": record.trade_id,
        "p": record.price,
        "q": record.quantity,
        "T": record.trade_time * scale,
        "m": record.is_buyer_maker,
        "M": True,
    }


def read_until_closed(ws: websocket.WebSocket, limit: int = 100_000) -> list[bytes | str]:
    frames = []
    try:
        for _ in range(limit):
            frame = ws.recv()
            if not frame:
                break
            frames.append(frame)
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        pass  # closed abruptly: reading on, or answering a ping, finds the socket gone
    return frames


def test_raw_stream_replays_every_recorded_trade_exactly_then_falls_silent() -> None:
    with running(iter(RECORDS_0808)) as sim:
        ws = connect(sim.url + "/ws/btcusdt@trade")
        events = [recv_json(ws) for _ in RECORDS_0808]
        assert events == [event_of(record) for record in RECORDS_0808]
        ws.settimeout(0.3)
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv()
        assert sim.call(lambda: sim.simulator.feed.finished.is_set())
        ws.close()


def test_combined_stream_wraps_each_symbol_in_its_envelope() -> None:
    records, pace, _ = replay_source([BTC_0808, TRX_CSV])
    with running(records, pace=pace) as sim:
        ws = connect(sim.url + "/stream?streams=btcusdt@trade/trxusdt@trade")
        frames = [recv_json(ws) for _ in range(9757 + 10000)]
        by_stream: dict[str, list[int]] = {}
        for frame in frames:
            assert frame["data"]["e"] == "trade"
            assert frame["stream"] == frame["data"]["s"].lower() + "@trade"
            by_stream.setdefault(frame["stream"], []).append(frame["data"]["t"])
        assert by_stream["btcusdt@trade"] == list(range(3735683259, 3735693016))
        assert by_stream["trxusdt@trade"] == list(range(348656870, 348666870))
        # The 2024 BTCUSDT and 2025 TRXUSDT recordings play side by side, each from its own first trade.
        assert {frame["stream"] for frame in frames[:300]} == {"btcusdt@trade", "trxusdt@trade"}
        for stream in ("btcusdt@trade", "trxusdt@trade"):
            times = [frame["data"]["T"] for frame in frames if frame["stream"] == stream]
            assert times == sorted(times)


def test_microsecond_time_unit() -> None:
    records = list(itertools.islice(read_trades(TRX_CSV), 50))
    with running(iter(records)) as sim:
        ws = connect(sim.url + "/stream?streams=trxusdt@trade&timeUnit=MICROSECOND")
        frames = [recv_json(ws) for _ in records]
        assert [frame["data"] for frame in frames] == [event_of(record, 1000) for record in records]


def test_control_methods_and_their_errors() -> None:
    records = RECORDS_0808[:20]
    with running(iter(records), max_incoming_per_s=0) as sim:
        ws = connect(sim.url + "/ws")

        def call(request: Any) -> Any:
            ws.send(orjson.dumps(request).decode() if not isinstance(request, str) else request)
            return recv_json(ws)

        assert call({"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {"result": [], "id": 1}
        assert call({"method": "GET_PROPERTY", "params": ["combined"], "id": 2}) == {"result": False, "id": 2}
        assert call({"method": "SET_PROPERTY", "params": ["combined", True], "id": "x"}) == {"result": None, "id": "x"}
        assert call({"method": "GET_PROPERTY", "params": ["combined"], "id": 3}) == {"result": True, "id": 3}
        errors = [
            ("{not json", 3, None),
            ("[1]", 2, None),
            ({"method": "LIST_SUBSCRIPTIONS", "id": -1}, 2, None),
            ({"method": "LIST_SUBSCRIPTIONS", "id": True}, 2, None),
            ({"method": "LIST_SUBSCRIPTIONS", "id": "x" * 37}, 2, None),
            ({"method": "FLY", "id": 4}, 2, 4),
            ({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 5}, 2, 5),
            ({"method": "SUBSCRIBE", "params": ["BTCUSDT@trade"], "id": 6}, 2, 6),
            ({"method": "SUBSCRIBE", "params": [f"s{i}@trade" for i in range(1025)], "id": 7}, 2, 7),
            ({"method": "SET_PROPERTY", "params": ["speed", True], "id": 8}, 0, 8),
            ({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 9}, 1, 9),
            ({"method": "GET_PROPERTY", "params": ["speed"], "id": 10}, 0, 10),
        ]
        for request, code, request_id in errors:
            reply = call(request)
            assert reply["error"]["code"] == code, (request, reply)
            assert reply["error"]["msg"]
            assert reply["id"] == request_id
        assert call({"method": "SUBSCRIBE", "params": ["btcusdt@trade", "btcusdt@depth"], "id": 11}) == {
            "result": None,
            "id": 11,
        }
        frames = [recv_json(ws) for _ in records]
        # combined was switched on before subscribing: every frame is an envelope.
        assert frames == [{"stream": "btcusdt@trade", "data": event_of(record)} for record in records]
        assert call({"method": "LIST_SUBSCRIPTIONS", "id": 12}) == {
            "result": ["btcusdt@trade", "btcusdt@depth"],
            "id": 12,
        }
        assert call({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@trade"], "id": 13}) == {
            "result": None,
            "id": 13,
        }
        assert call({"method": "LIST_SUBSCRIPTIONS", "id": 14}) == {"result": ["btcusdt@depth"], "id": 14}


def test_more_than_the_message_rate_limit_disconnects() -> None:
    with running(iter(RECORDS_0808[:5]), max_incoming_per_s=2) as sim:
        ws = connect(sim.url + "/ws")
        for request_id in range(10):
            ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": request_id}).decode())
        opcode, frame = None, None
        for _ in range(20):
            opcode, frame = ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert frame is not None
        assert int.from_bytes(frame.data[:2], "big") == 1008


def test_server_pings_and_drops_a_client_that_never_pongs() -> None:
    with running(iter(RECORDS_0808[:5]), ping_interval=0.1, ping_timeout=0.5) as sim:
        silent = connect(sim.url + "/ws/btcusdt@trade")  # never reads, so never answers a ping
        lively = connect(sim.url + "/ws")
        pings = 0
        # Keep reading (websocket-client answers each ping with a pong) until the silent client is dropped.
        while pings < 3 or sim.call(lambda: sim.simulator.active) > 1:
            opcode, frame = lively.recv_data_frame(True)
            pings += opcode == websocket.ABNF.OPCODE_PING
            assert pings < 200, "the silent client was never dropped"
        lively.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}).decode())
        reply: Any = None
        while reply is None:
            opcode, frame = lively.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_TEXT:
                reply = orjson.loads(frame.data)
        assert reply == {"result": [], "id": 1}
        assert read_until_closed(silent)[:5] == [orjson.dumps(event_of(r)).decode() for r in RECORDS_0808[:5]]


def test_connection_lifetime_ends_with_a_normal_close() -> None:
    with running(iter(RECORDS_0808[:5]), lifetime=0.3) as sim:
        ws = connect(sim.url + "/ws/btcusdt@trade")
        frames = [ws.recv_data_frame(True) for _ in range(6)]
        opcode, frame = frames[-1]
        assert [f[0] for f in frames[:5]] == [websocket.ABNF.OPCODE_TEXT] * 5
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame.data[:2], "big") == 1000


def test_gap_every_skips_ids_on_the_websocket_that_rest_still_serves() -> None:
    with running(iter(RECORDS_0808), gap_every=100) as sim:
        ws = connect(sim.url + "/ws/btcusdt@trade")
        expected = [r for i, r in enumerate(RECORDS_0808, 1) if i % 100]
        ids = [recv_json(ws)["t"] for _ in expected]
        assert ids == [r.trade_id for r in expected]
        missing = sorted(set(range(3735683259, 3735693016)) - set(ids))
        assert len(missing) == 97
        wait_for(lambda: sim.call(lambda: sim.simulator.feed.finished.is_set()), what="the feed to finish")
        by_id = {r.trade_id: r for r in RECORDS_0808}
        for trade_id in missing[:5]:
            status, body = http_get(f"{sim.http_url}/api/v3/historicalTrades?symbol=BTCUSDT&fromId={trade_id}&limit=1")
            assert status == 200
            record = by_id[trade_id]
            assert body == [
                {
                    "id": trade_id,
                    "price": record.price,
                    "qty": record.quantity,
                    "quoteQty": format(
                        (Decimal(record.price) * Decimal(record.quantity)).quantize(Decimal("1e-8")), "f"
                    ),
                    "time": record.trade_time,
                    "isBuyerMaker": record.is_buyer_maker,
                    "isBestMatch": True,
                }
            ]
        assert sim.call(lambda: sim.simulator.feed.skipped) == 97


def test_rest_historical_trades_paging_and_binance_errors() -> None:
    with running(iter(RECORDS_0808)) as sim:
        base = sim.http_url
        assert http_get(f"{base}/api/v3/historicalTrades?symbol=BTCUSDT") == (
            400,
            {"code": -1121, "msg": "Invalid symbol."},
        )
        ws = connect(sim.url + "/ws/btcusdt@trade")  # the market opens with its first subscriber
        for _ in RECORDS_0808:
            ws.recv()
        wait_for(lambda: sim.call(lambda: sim.simulator.feed.finished.is_set()), what="the feed to finish")
        status, body = http_get(f"{base}/api/v3/historicalTrades?symbol=btcusdt&fromId=3735683259")
        assert status == 200
        assert [t["id"] for t in body] == list(range(3735683259, 3735683259 + 500))  # default limit 500
        status, body = http_get(f"{base}/api/v3/historicalTrades?symbol=BTCUSDT&fromId=3735692900&limit=1000")
        assert [t["id"] for t in body] == list(range(3735692900, 3735693016))
        status, body = http_get(f"{base}/api/v3/historicalTrades?symbol=BTCUSDT&limit=3")
        assert [t["id"] for t in body] == [3735693013, 3735693014, 3735693015]  # no fromId: the latest
        status, body = http_get(f"{base}/api/v3/trades?symbol=BTCUSDT&limit=2&fromId=1")
        assert [t["id"] for t in body] == [3735693014, 3735693015]  # /trades ignores fromId
        assert http_get(f"{base}/api/v3/historicalTrades?symbol=BTCUSDT&fromId=3735693016") == (200, [])
        errors = {
            "": -1102,
            "symbol=": -1102,
            "symbol=ETHUSDT": -1121,
            "symbol=BTCUSDT&limit=abc": -1100,
            "symbol=BTCUSDT&limit=0": -1130,
            "symbol=BTCUSDT&limit=1001": -1130,
            "symbol=BTCUSDT&fromId=-5": -1100,
        }
        for query, code in errors.items():
            status, body = http_get(f"{base}/api/v3/historicalTrades?{query}")
            assert (status, body["code"]) == (400, code), query
            assert body["msg"]
        assert http_get(f"{base}/api/v3/ping") == (200, {})
        status, body = http_get(f"{base}/api/v3/time")
        assert status == 200
        assert body["serverTime"] > 1_700_000_000_000
        assert http_get(f"{base}/api/v3/nothing")[0] == 404
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            connect(sim.url + "/elsewhere")
        assert refused.value.status_code == 404


def test_drop_every_closes_abruptly_and_the_feed_resumes_where_the_market_is() -> None:
    with running(iter(RECORDS_0808), drop_every=1000) as sim:
        first = [orjson.loads(frame)["t"] for frame in read_until_closed(connect(sim.url + "/ws/btcusdt@trade"))]
        assert first == list(range(3735683259, 3735683259 + 1000))
        second = [orjson.loads(frame)["t"] for frame in read_until_closed(connect(sim.url + "/ws/btcusdt@trade"))]
        assert len(second) == 1000
        assert second == list(range(second[0], second[0] + 1000))
        assert second[0] > first[-1]  # never rewinds; what fell in between is a gap to backfill over REST
        gap = list(range(first[-1] + 1, second[0]))
        if gap:
            status, body = http_get(f"{sim.http_url}/api/v3/historicalTrades?symbol=BTCUSDT&fromId={gap[0]}&limit=1000")
            assert status == 200
            assert [t["id"] for t in body] == gap[:1000]


def _frames_with_malformed(seed: int) -> list[bytes | str]:
    with running(iter(RECORDS_0808[:3000]), malformed_rate=0.05, seed=seed) as sim:
        ws = connect(sim.url + "/ws/btcusdt@trade")
        frames: list[bytes | str] = []
        valid = 0
        while valid < 3000:
            frame = ws.recv()
            frames.append(frame)
            try:
                event = orjson.loads(frame)
            except orjson.JSONDecodeError:
                continue
            if {"p", "q"} <= event.keys() and not event["p"].startswith("-") and event["q"] != "n/a":
                valid += 1
        return frames


def test_malformed_frames_come_in_addition_to_every_real_trade_deterministically() -> None:
    frames = _frames_with_malformed(seed=1)
    real = [orjson.dumps(event_of(r)).decode() for r in RECORDS_0808[:3000]]
    assert [f for f in frames if f in set(real)] == real
    bad = [f for f in frames if f not in set(real)]
    assert 75 <= len(bad) <= 240
    kinds = set()
    for frame in bad:
        try:
            event = orjson.loads(frame)
        except orjson.JSONDecodeError:
            kinds.add("bad-json")
            continue
        kinds.add("missing" if "p" not in event else "negative" if event["p"].startswith("-") else "non-numeric")
    assert kinds == {"bad-json", "missing", "negative", "non-numeric"}
    assert _frames_with_malformed(seed=1) == frames


# An endless feed in this process competes with the client for the GIL, so these read a few thousand frames.
def test_loop_repeats_with_consecutive_ids_and_later_times() -> None:
    with running(looped(lambda: itertools.islice(read_trades(TRX_CSV), 700))) as sim:
        ws = connect(sim.url + "/ws/trxusdt@trade")
        events = [recv_json(ws) for _ in range(2_500)]
        assert [e["t"] for e in events] == list(range(348656870, 348656870 + 2_500))
        times = [e["T"] for e in events]
        assert times == sorted(times)
        assert [e["p"] for e in events[700:1400]] == [e["p"] for e in events[:700]]


def test_synthetic_market_at_recorded_pacing_and_flat_out() -> None:
    with running(synthetic_trades(["BTCUSDT", "ETHUSDT"], 20_000, seed=5), speed=1.0, start_delay=0.05) as sim:
        ws = connect(sim.url + "/stream?streams=btcusdt@trade/ethusdt@trade")
        events = [recv_json(ws)["data"] for _ in range(300)]
        assert {e["s"] for e in events} == {"BTCUSDT", "ETHUSDT"}
    with running(synthetic_trades(["BTCUSDT"], 1000, seed=5)) as sim:
        ws = connect(sim.url + "/ws/btcusdt@trade")
        events = [recv_json(ws) for _ in range(3_000)]
        assert [e["t"] for e in events] == list(range(1_000_000, 1_003_000))
        whales = [e for e in events if Decimal(e["p"]) * Decimal(e["q"]) >= 100_000]
        assert 1 <= len(whales) <= 60


def test_build_source_options() -> None:
    base: dict[str, Any] = {"synthetic": False, "replay": None, "symbols": "", "rate": 0.0, "seed": 0, "symbol": None}
    base["loop"] = False
    source, pace, known = build_source({**base, "replay": [str(TRX_CSV), str(BTC_0808)]}, "coinbase")
    assert known == ("BTC-USDT", "TRX-USDT")
    first = next(iter(source))
    assert (first.exchange, first.symbol, first.trade_id) == ("coinbase", "TRX-USDT", 348656870)
    assert pace(first) == 0  # the offset into its own stream
    source, pace, known = build_source({**base, "replay": [str(TRX_CSV)], "loop": True}, "binance")
    assert known == ("TRXUSDT",)
    assert len(list(itertools.islice(source, 10_001))) == 10_001
    source, pace, known = build_source({**base, "synthetic": True, "symbols": "btcusdt, ethusdt", "rate": 5}, "binance")
    assert known == ("BTCUSDT", "ETHUSDT")
    record = next(iter(source))
    assert record.symbol in known
    assert pace(record) == record.trade_time
    _, _, known = build_source({**base, "synthetic": True, "symbols": "btcusdt,ETH-USD", "rate": 5}, "coinbase")
    assert known == ("BTC-USDT", "ETH-USD")


def test_build_source_preloads_a_finite_replay() -> None:
    base: dict[str, Any] = {"synthetic": False, "symbols": "", "rate": 0.0, "seed": 0, "symbol": None, "loop": False}
    lazy, _, _ = build_source({**base, "replay": [str(TRX_CSV)]}, "binance")
    loaded, _, known = build_source({**base, "replay": [str(TRX_CSV)], "preload": True}, "binance")
    assert known == ("TRXUSDT",)
    assert list(loaded) == list(lazy)
    looped, _, _ = build_source(
        {**base, "replay": [str(TRX_CSV)], "loop": True, "max_trades": 25_000, "preload": True}, "binance"
    )
    assert len(list(looped)) == 25_000
    with pytest.raises(CommandError, match="--preload needs a finite market"):
        build_source({**base, "replay": [str(TRX_CSV)], "loop": True, "preload": True}, "binance")


def test_max_trades_says_in_the_log_that_it_ended_the_market(caplog: pytest.LogCaptureFixture) -> None:
    base: dict[str, Any] = {"synthetic": False, "symbols": "", "rate": 0.0, "seed": 0, "symbol": None}
    caplog.set_level(logging.INFO, logger="simulator")
    source, _, _ = build_source({**base, "replay": [str(TRX_CSV)], "loop": True, "max_trades": 300}, "binance")
    assert len(list(source)) == 300
    (line,) = [r.getMessage() for r in caplog.records if "--max-trades" in r.getMessage()]
    assert (
        line == "simulator: --max-trades 300 reached, the market ends: no more trades (the server runs until stopped)"
    )
    caplog.clear()
    # A recording shorter than the limit ends on its own: no such line then.
    short, _, _ = build_source({**base, "replay": [str(TRX_CSV)], "loop": False, "max_trades": 10**9}, "binance")
    assert list(short)
    assert not [r for r in caplog.records if "--max-trades" in r.getMessage()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--replay FILE"),
        (["--synthetic", "--replay", "x.gz"], "exclude"),
        (["--synthetic", "--rate", "10"], "--symbols"),
        (["--synthetic", "--symbols", "btcusdt"], "--rate"),
        (["--replay", "missing.gz"], "no such file"),
        (["--replay", str(BTC_0808), "--speed", "-1"], "--speed"),
    ],
)
def test_command_refuses_bad_options_at_start(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("simulate_exchange", "--port", "0", *args)


def _port_of(child: ChildProcess) -> Callable[[], int | None]:
    def port() -> int | None:
        assert child.proc.poll() is None, child.output()
        for line in child.output().splitlines():
            if line.startswith("listening on ws://"):
                return int(line.rsplit(":", 1)[1])
        return None

    return port


def test_command_serves_a_replay_and_exits_zero_on_sigterm(spawn: Callable[..., ChildProcess]) -> None:
    child = spawn(manage("simulate_exchange", "--port", "0", "--replay", str(BTC_0808), "--speed", "0"), name="sim")
    port = wait_for(_port_of(child), timeout=60, what="the simulator to listen")
    ws = connect(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade")
    events = [recv_json(ws)["data"] for _ in RECORDS_0808]
    assert events == [event_of(r) for r in RECORDS_0808]
    ws.close()
    assert child.stop(signal.SIGTERM) == 0
    assert "stopped: 9757 trades produced" in child.output()


def test_command_synthetic_kraken_exits_zero_on_sigint(spawn: Callable[..., ChildProcess]) -> None:
    args = [
        "--exchange",
        "kraken",
        "--port",
        "0",
        "--synthetic",
        "--rate",
        "500",
        "--symbols",
        "BTC/USD",
        "--seed",
        "2",
    ]
    child = spawn(manage("simulate_exchange", *args), name="sim")
    port = wait_for(_port_of(child), timeout=60, what="the simulator to listen")
    ws = connect(f"ws://127.0.0.1:{port}/v2")
    assert recv_json(ws)["channel"] == "status"
    ws.send(orjson.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": ["BTC/USD"]}}).decode())
    assert recv_json(ws)["success"] is True
    trades: list[Any] = []
    while len(trades) < 20:
        frame = recv_json(ws)
        if frame.get("channel") == "trade":
            trades.extend(frame["data"])
    assert {t["symbol"] for t in trades} == {"BTC/USD"}
    ws.close()
    assert child.stop(signal.SIGINT) == 0


def test_background_simulator_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        simulator = BackgroundSimulator(SimulatorConfig(port=port), iter(RECORDS_0808[:1]))
        with pytest.raises(RuntimeError, match="did not start"):
            simulator.start()
        simulator.stop()
