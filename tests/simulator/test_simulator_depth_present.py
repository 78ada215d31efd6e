"""The Binance simulator's recorded depth on the present clock (``--present``) and round each loop (``--loop``), as
``make demo`` runs it: the events move with their symbol's trades, and each loop pass restarts the recorded book
with update ids past a hole, so a client following Binance's procedure resyncs and is right again (never applies
the recording's first events to the book its last ones made)."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import orjson
import pytest
import websocket

from books.binance import BinanceBookSync
from books.book import levels_of
from books.sync import SEQUENCE_GAP
from simulator.depth import LOOP_ID_GAP, read_depth
from simulator.feed import on_present_clock, replay_source
from simulator.management.commands.simulate_exchange import build_depth, build_source
from simulator.replay import read_trades
from tests.books.frames import BINANCE_SNAPSHOT_ID, binance_reference
from tests.simulator.test_simulator_depth import BTC_0809, recorded_lines
from tests.simulator.test_simulator_support import BTC_0808, TRX_CSV, connect, http_get, running

pytestmark = pytest.mark.unit

NOW = 1_800_000_000_000


def recorded_btc_order() -> list[dict[str, Any]]:
    """0808's depth events and BTCUSDT trades as the feed interleaves them: by receive ms, depth first on a tie."""
    return [
        frame
        for _, _, frame in sorted(
            ((ms, 0 if "depth" in frame["stream"] else 1, frame) for ms, frame in recorded_lines(BTC_0808)),
            key=lambda row: (row[0], row[1]),
        )
    ]


def test_present_moves_the_depth_events_with_their_symbol_s_trades_beside_a_stream_of_another_year() -> None:
    # The demo's replay: 2024 BTCUSDT (trades and depth) beside 2025 TRXUSDT, merged by their offsets on one clock.
    tape = read_depth([BTC_0808])
    assert tape is not None
    tape.present()
    assert tape.next_at > NOW * 2  # nothing goes out before the first BTCUSDT trade says how far times moved
    records, pace, _ = replay_source([BTC_0808, TRX_CSV])
    shifted, present_pace = on_present_clock(records, pace, lambda: NOW, tape.align)
    expected = recorded_btc_order()[:1500]
    first_trade = next(frame["data"] for frame in expected if frame["data"]["e"] == "trade")
    delta = NOW - first_trade["T"]  # both streams start now: BTCUSDT's first trade is at NOW
    with running(shifted, present_pace, depth=tape) as sim:
        ws = connect(sim.url + "/stream?streams=btcusdt@trade/btcusdt@depth@100ms/trxusdt@trade")
        frames: list[dict[str, Any]] = []
        while len([f for f in frames if f["stream"].startswith("btcusdt")]) < len(expected):
            frames.append(orjson.loads(ws.recv()))
        ws.close()
    assert tape.offset == delta
    btc = [frame for frame in frames if frame["stream"].startswith("btcusdt")]
    moved = []
    for frame in expected:
        data = dict(frame["data"])
        data["E"] += delta
        if data["e"] == "trade":
            data["T"] += delta
        moved.append({**frame, "data": data})
    assert btc == moved  # the recorded order and fields, every time moved by the same delta
    assert any(frame["stream"].startswith("trxusdt") for frame in frames)


def test_without_present_and_loop_the_events_go_out_exactly_as_recorded() -> None:
    tape = read_depth([BTC_0808])
    assert tape is not None
    events = tape.due()
    assert [event.data for event in events] == [event.data for event in tape.events]
    assert tape.passes == 0


class Client:
    """A Binance book client over the simulator's socket and REST, following the documented procedure."""

    def __init__(self, ws: websocket.WebSocket, rest: str) -> None:
        self.ws, self.rest = ws, rest
        self.sync = BinanceBookSync("BTCUSDT")
        self.events: list[dict[str, Any]] = []
        self.snapshots: list[dict[str, Any]] = []

    def step(self) -> dict[str, Any]:
        event = orjson.loads(self.ws.recv())["data"]
        self.events.append(event)
        self.sync.on_delta(event)
        if self.sync.snapshot_needed:
            status, snapshot = http_get(self.rest + "/api/v3/depth?symbol=BTCUSDT&limit=5000")
            assert status == 200
            self.snapshots.append(snapshot)
            self.sync.on_snapshot(snapshot)
        return event


def assert_recorded_book(book: Any, recorded_id: int) -> None:
    """``book`` is the recording's book at ``recorded_id`` (snapshot plus events), rebuilt in the test."""
    bids, asks, through = binance_reference(through=recorded_id)
    assert through == recorded_id
    held_bids, held_asks = levels_of(book)
    assert dict(held_bids) == bids
    assert dict(held_asks) == asks


def test_a_loop_restarts_the_book_with_ids_past_a_hole_so_a_client_resyncs_and_is_right_again() -> None:
    tape = read_depth([BTC_0808, BTC_0809])
    assert tape is not None
    recorded = [orjson.loads(event.data) for event in tape.events]
    first_u, last_u = recorded[0]["U"], recorded[-1]["u"]
    shift = last_u - first_u + 1 + LOOP_ID_GAP  # what each pass adds to the recorded ids
    trades = list(itertools.chain(read_trades(BTC_0808), read_trades(BTC_0809)))
    span = trades[-1].trade_time - trades[0].trade_time + 1  # what each pass adds to the recorded times
    records, pace, _ = replay_source([BTC_0808, BTC_0809], loop=True, on_pass=tape.next_pass)
    with running(records, pace, depth=tape) as sim:
        client = Client(connect(sim.url + "/stream?streams=btcusdt@depth@100ms"), sim.http_url)
        for _ in range(len(recorded)):  # the first pass: one sync, no break
            client.step()
        assert (client.sync.valid, client.sync.syncs, client.sync.resyncs) == (True, 1, 0)
        assert_recorded_book(client.sync.book, last_u)
        # The second pass: the same events, ids and times moved forward; the hole breaks the client's book.
        second = [client.step() for _ in range(300)]
        client.ws.close()
    assert [(e["U"], e["u"], e["E"]) for e in second] == [
        (r["U"] + shift, r["u"] + shift, r["E"] + span) for r in recorded[:300]
    ]
    assert [(e["b"], e["a"]) for e in second] == [(r["b"], r["a"]) for r in recorded[:300]]
    assert second[0]["U"] == last_u + 1 + LOOP_ID_GAP  # forward, past a hole: never chains onto the last book
    ids = [e["u"] for e in client.events]
    assert ids == sorted(ids)
    assert client.sync.resyncs == 1
    assert client.sync.last_break is not None
    assert client.sync.last_break.reason == SEQUENCE_GAP
    # REST served the restarted book: the recorded snapshot (and events of the pass) under the moved ids.
    resync = client.snapshots[-1]
    assert resync["lastUpdateId"] >= BINANCE_SNAPSHOT_ID + shift
    assert client.sync.valid
    assert client.sync.syncs == 2
    assert_recorded_book(client.sync.book, client.sync.last_update_id - shift)
    assert tape.passes == 1


def test_the_command_follows_the_present_and_the_loop_for_binance_only() -> None:
    options: dict[str, Any] = {
        "replay": [str(BTC_0808)],
        "synthetic": False,
        "present": True,
        "loop": True,
        "symbol": None,
        "symbols": "",
        "rate": 0.0,
        "seed": 0,
    }
    tape = build_depth(options, "binance")
    assert tape is not None
    source, _pace, _ = build_source(options, "binance", tape)
    assert tape.offset is None  # waits for the first trade
    first = next(iter(source))
    assert tape.offset == first.trade_time - next(read_trades(BTC_0808)).trade_time
    assert tape.next_at < first.received_at + 1000  # the first events are due with the first trades
    assert build_depth(options, "coinbase") is None  # no recorded level2 in a Binance file
    assert build_depth(options, "kraken") is None  # derived Kraken books keep their recorded times: not --present


def test_a_tape_without_a_recorded_snapshot_restarts_from_empty_under_the_moved_ids() -> None:
    tape = read_depth([BTC_0809])
    assert tape is not None
    recorded = [orjson.loads(event.data) for event in tape.events]
    shift = recorded[-1]["u"] - recorded[0]["U"] + 1 + LOOP_ID_GAP
    span = tape.events[-1].received_at - tape.events[0].received_at + 1
    tape.next_pass({"BTCUSDT"}, span)  # the trades began their second pass
    assert len(tape.due(tape.events[-1].received_at)) == len(recorded)  # the first pass; the second is not due yet
    assert tape.passes == 0
    out = tape.due(tape.events[0].received_at + span + 1000)
    assert tape.passes == 1
    assert [orjson.loads(event.data)["U"] for event in out] == [r["U"] + shift for r in recorded[: len(out)]]
    snapshot = tape.snapshot("BTCUSDT", 5)
    assert snapshot is not None
    # From empty again: the events of this pass only, under the moved ids.
    assert snapshot["lastUpdateId"] == recorded[len(out) - 1]["u"] + shift
    bids: dict[Decimal, Decimal] = {}
    for r in recorded[: len(out)]:
        for price, qty in r["b"]:
            if Decimal(qty):
                bids[Decimal(price)] = Decimal(qty)
            else:
                bids.pop(Decimal(price), None)
    assert snapshot["bids"][0][0] == format(max(bids), "f")
