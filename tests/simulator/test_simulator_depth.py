"""The Binance simulator's depth replay on a real socket: the recorded ``@depth@100ms`` events in Binance's layout,
interleaved with the trades in recorded order, ``/api/v3/depth`` consistent with what was sent (checked against
books rebuilt in the test from the recording's lines), its weight, and the depth faults."""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import websocket
from django.core.management import CommandError

from simulator.depth import DepthTape, depth_weight, read_depth
from simulator.management.commands.simulate_exchange import build_depth
from simulator.replay import read_trades
from tests.books.frames import BINANCE_SNAPSHOT_ID, RefSide, apply_rows, binance_reference, binance_snapshot
from tests.conftest import DATA
from tests.simulator.test_simulator_support import BTC_0808, connect, http_get, running

pytestmark = pytest.mark.unit

BTC_0809 = DATA / "binance-spot-ws" / "btcusdt_20240809.gz"


def recorded_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(receive ms, frame) of every depth and trade line of a recording, in file order."""
    out = []
    with gzip.open(path, "rb") as handle:
        for line in handle:
            head, _, frame = line.partition(b" ")
            if b"@depth@100ms" in frame[:60] or b"@trade" in frame[:60]:
                out.append((int(head) // 1_000_000, orjson.loads(frame)))
    return out


def top(side: RefSide, n: int, descending: bool) -> list[list[str]]:
    return [[format(p, "f"), format(q, "f")] for p, q in sorted(side.items(), reverse=descending)[:n]]


def read_frames(ws: websocket.WebSocket, count: int) -> list[dict[str, Any]]:
    return [orjson.loads(ws.recv()) for _ in range(count)]


def test_depth_events_go_out_in_binance_layout_interleaved_with_trades_in_recorded_order() -> None:
    lines = recorded_lines(BTC_0808)
    # The feed sends the depth events received up to a trade's receive millisecond before that trade.
    expected = [
        frame
        for _, _, frame in sorted(
            ((ms, 0 if "depth" in frame["stream"] else 1, frame) for ms, frame in lines),
            key=lambda row: (row[0], row[1]),
        )
    ]
    assert sum("depth" in frame["stream"] for frame in expected) == 3451
    tape = read_depth([BTC_0808])
    assert tape is not None
    assert len(tape) == 3451
    with running(read_trades(BTC_0808), depth=tape) as sim:
        ws = connect(sim.url + "/stream?streams=btcusdt@trade/btcusdt@depth@100ms")
        frames = read_frames(ws, len(expected))
        ws.close()
    assert frames == expected  # the events exactly as recorded: same fields, same strings, same order


def test_raw_depth_stream_and_trade_only_connections_beside_it() -> None:
    tape = read_depth([BTC_0808])
    assert tape is not None
    deltas = [frame["data"] for _, frame in recorded_lines(BTC_0808) if "depth" in frame["stream"]]
    with running(read_trades(BTC_0808), depth=tape) as sim:
        depth_ws = connect(sim.url + "/ws/btcusdt@depth")
        trade_ws = connect(sim.url + "/ws/btcusdt@trade")
        depth_frames = read_frames(depth_ws, len(deltas))
        trade_frames = read_frames(trade_ws, 50)
        depth_ws.close()
        trade_ws.close()
    assert depth_frames == deltas  # bare events on /ws
    assert {frame["e"] for frame in trade_frames} == {"trade"}  # a trade-only connection gets no depth event


def test_rest_snapshot_is_the_recorded_one_plus_the_deltas_sent_up_to_the_moment_asked() -> None:
    tape = read_depth([BTC_0808, BTC_0809])
    assert tape is not None
    with running(read_trades(BTC_0808), depth=tape) as sim:
        ws = connect(sim.url + "/stream?streams=btcusdt@depth@100ms")
        status, first = http_get(sim.http_url + "/api/v3/depth?symbol=BTCUSDT&limit=1000")
        received = [frame["data"]["u"] for frame in read_frames(ws, 400)]
        # The client reads no more: the feed waits for it (bounded queues), so the market stands still here.
        status2, later = http_get(sim.http_url + "/api/v3/depth?symbol=btcusdt&limit=5000")
        ws.close()
    assert status == status2 == 200
    for snapshot, limit in ((first, 1000), (later, 5000)):
        last = snapshot["lastUpdateId"]
        if last == BINANCE_SNAPSHOT_ID:
            bids, asks = _snapshot_only()
        else:
            bids, asks, through = binance_reference(through=last)
            assert through == last
        assert snapshot["bids"] == top(bids, limit, descending=True)
        assert snapshot["asks"] == top(asks, limit, descending=False)
    assert later["lastUpdateId"] >= received[-1]  # at least every event the client has seen
    assert later["lastUpdateId"] > BINANCE_SNAPSHOT_ID
    assert len(later["bids"]) > 1000  # deeper than the recorded snapshot: levels events added since


def _snapshot_only() -> tuple[RefSide, RefSide]:
    snapshot = binance_snapshot()
    bids: RefSide = {}
    asks: RefSide = {}
    apply_rows(bids, snapshot["bids"])
    apply_rows(asks, snapshot["asks"])
    return bids, asks


def test_without_a_recorded_snapshot_rest_serves_every_delta_so_far_from_empty_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tape = read_depth([BTC_0809])  # the second file continues the stream: no REST snapshot in it
    assert tape is not None
    deltas = [frame["data"] for _, frame in recorded_lines(BTC_0809) if "depth" in frame["stream"]]
    with caplog.at_level(logging.INFO, logger="simulator.depth"), running(read_trades(BTC_0809), depth=tape) as sim:
        ws = connect(sim.url + "/stream?streams=btcusdt@depth@100ms")
        read_frames(ws, 300)
        status, snapshot = http_get(sim.http_url + "/api/v3/depth?symbol=BTCUSDT&limit=5000")
        ws.close()
    assert status == 200
    bids: RefSide = {}
    asks: RefSide = {}
    for delta in deltas:
        apply_rows(bids, delta["b"])
        apply_rows(asks, delta["a"])
        if delta["u"] == snapshot["lastUpdateId"]:
            break
    else:
        raise AssertionError(f"lastUpdateId {snapshot['lastUpdateId']} is no event's u")
    assert snapshot["bids"] == top(bids, 5000, descending=True)
    assert snapshot["asks"] == top(asks, 5000, descending=False)
    assert "holds no REST snapshot of BTCUSDT" in caplog.text


def test_depth_drop_and_swap_faults_and_rest_keeps_the_dropped_event() -> None:
    deltas = [frame["data"] for _, frame in recorded_lines(BTC_0808) if "depth" in frame["stream"]]
    tape = read_depth([BTC_0808])
    assert tape is not None
    tape.drop_every = 7
    with running(read_trades(BTC_0808), depth=tape) as sim:
        ws = connect(sim.url + "/ws/btcusdt@depth@100ms")
        frames = read_frames(ws, len(deltas) - len(deltas) // 7)
        ws.close()
    assert frames == [delta for index, delta in enumerate(deltas, 1) if index % 7]
    assert tape.dropped == len(deltas) // 7

    tape = read_depth([BTC_0808])
    assert tape is not None
    tape.swap_every = 10
    with running(read_trades(BTC_0808), depth=tape) as sim:
        ws = connect(sim.url + "/ws/btcusdt@depth@100ms")
        frames = read_frames(ws, len(deltas))
        ws.close()
    ids = [frame["u"] for frame in frames]
    assert sorted(ids) == [delta["u"] for delta in deltas]  # nothing lost
    swapped = [index for index in range(1, len(ids)) if ids[index] < ids[index - 1]]
    assert len(swapped) == len(deltas) // 10
    assert ids[9] == deltas[10]["u"]
    assert ids[10] == deltas[9]["u"]


def test_depth_rest_errors_and_weight_against_the_rest_limit() -> None:
    assert [depth_weight(n) for n in (1, 100, 101, 500, 1000, 1001, 5000)] == [5, 5, 25, 25, 50, 250, 250]
    tape = DepthTape([], {"BTCUSDT": {"lastUpdateId": 7, "bids": [["1.50", "2"]], "asks": [["2.00", "1"]]}})
    with running(iter(()), depth=tape, rest_rate=2.0, symbols=("BTCUSDT",)) as sim:
        base = sim.http_url + "/api/v3/depth"
        assert http_get(base + "?limit=10")[1]["code"] == -1102
        assert http_get(base + "?symbol=ETHUSDT")[1]["code"] == -1121
        assert http_get(base + "?symbol=BTCUSDT&limit=5001")[1]["code"] == -1130
        assert http_get(base + "?symbol=BTCUSDT&limit=x")[1]["code"] == -1100
        status, body = http_get(base + "?symbol=BTCUSDT&limit=1000")  # weight 50: 2 of the bucket's 2 tokens
        assert (status, body) == (200, {"lastUpdateId": 7, "bids": [["1.50", "2"]], "asks": [["2.00", "1"]]})
        status, body = http_get(base + "?symbol=BTCUSDT&limit=1000")
        assert (status, body["code"]) == (429, -1003)


def test_the_command_reads_depth_only_for_binance_replays_and_refuses_bad_fault_options() -> None:
    options = {"replay": [str(BTC_0808)], "synthetic": False, "present": False}
    tape = build_depth({**options, "depth_drop_every": 5, "depth_swap_every": 0}, "binance")
    assert tape is not None
    assert (len(tape), tape.drop_every) == (3451, 5)
    assert build_depth(options, "coinbase") is None
    assert build_depth({**options, "present": True}, "binance") is not None  # it follows the trades' clock
    with pytest.raises(CommandError, match=re.escape("--depth-swap-every must be 0 (off) or at least 2, got 1")):
        build_depth({**options, "depth_swap_every": 1}, "binance")
    with pytest.raises(CommandError, match=re.escape("--depth-drop-every must be 0 (off) or at least 2, got -3")):
        build_depth({**options, "depth_drop_every": -3}, "binance")
