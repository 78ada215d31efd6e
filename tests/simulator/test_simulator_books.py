"""The simulator's Coinbase ``level2`` and Kraken v2 ``book`` on a real socket (unit: no Kafka): the frames in each
exchange's layout, checked against books rebuilt in the test with plain dicts (:mod:`tests.books.frames`), the
resubscription's snapshot, and each depth fault; and the ``simulate_exchange`` options that set them."""

from __future__ import annotations

import heapq
import json
import logging
import zlib
from decimal import Decimal
from typing import Any

import orjson
import pytest
import websocket
from django.core.management import CommandError

from simulator.depth import CROSSING_PRICE, read_coinbase_l2, read_depth
from simulator.feed import exchange_symbol, for_exchange
from simulator.management.commands.simulate_exchange import build_depth
from simulator.replay import read_trades
from tests.books.frames import RefSide, apply_rows, binance_reference, coinbase_messages, coinbase_reference
from tests.ingest.recordings import COINBASE_RECORDING
from tests.simulator.test_simulator_support import BTC_0808, connect, running

pytestmark = pytest.mark.unit

PRODUCTS = ["BTC-USD", "ETH-USD"]


def recorded_updates() -> list[dict[str, Any]]:
    """The recording's ``level2`` update events, in order."""
    return [e for m in coinbase_messages() if m["channel"] == "l2_data" for e in m["events"] if e["type"] == "update"]


def coinbase_session(ws: websocket.WebSocket, updates: int) -> list[dict[str, Any]]:
    """Subscribe ``level2`` and read until ``updates`` update events came."""
    ws.send(orjson.dumps({"type": "subscribe", "product_ids": PRODUCTS, "channel": "level2"}))
    frames: list[dict[str, Any]] = []
    seen = 0
    while seen < updates:
        frames.append(orjson.loads(ws.recv()))
        seen += sum(e.get("type") == "update" for e in frames[-1]["events"] if frames[-1]["channel"] == "l2_data")
    return frames


def rebuild(frames: list[dict[str, Any]]) -> dict[str, tuple[RefSide, RefSide]]:
    """Each product's book from the frames a client got (plain dicts; a snapshot replaces the book)."""
    books: dict[str, tuple[RefSide, RefSide]] = {}
    for frame in frames:
        if frame["channel"] != "l2_data":
            continue
        for event in frame["events"]:
            if event["type"] == "snapshot":
                books[event["product_id"]] = ({}, {})
            bids, asks = books[event["product_id"]]
            for update in event["updates"]:
                apply_rows(bids if update["side"] == "bid" else asks, [[update["price_level"], update["new_quantity"]]])
    return books


def coinbase_tape(**faults: int) -> Any:
    tape = read_coinbase_l2([COINBASE_RECORDING])
    assert tape is not None
    for name, every in faults.items():
        setattr(tape, name, every)
    return tape


def test_coinbase_level2_replays_the_recorded_updates_in_the_real_layout_with_one_sequence_per_connection() -> None:
    updates = recorded_updates()
    assert len(updates) == 773
    with running(read_trades(COINBASE_RECORDING), depth=coinbase_tape(), exchange="coinbase") as sim:
        ws = connect(sim.url)
        frames = coinbase_session(ws, len(updates))
        ws.close()
    assert [f["sequence_num"] for f in frames] == list(range(len(frames)))
    assert {f["channel"] for f in frames} == {"l2_data", "subscriptions"}  # no trade: market_trades not subscribed
    assert [(e["type"], e["product_id"]) for e in frames[0]["events"] + frames[1]["events"]] == [
        ("snapshot", "BTC-USD"),
        ("snapshot", "ETH-USD"),
    ]
    assert frames[2]["events"] == [{"subscriptions": {"level2": PRODUCTS}}]
    sent = [e for f in frames[3:] for e in f["events"]]
    assert sent == updates  # field for field, in recorded order
    assert set(frames[3]) == {"channel", "client_id", "timestamp", "sequence_num", "events"}
    assert rebuild(frames) == coinbase_reference(coinbase_messages())


def test_coinbase_a_resubscription_gets_a_fresh_snapshot_consistent_with_the_updates_sent() -> None:
    updates = recorded_updates()
    with running(read_trades(COINBASE_RECORDING), depth=coinbase_tape(), exchange="coinbase") as sim:
        ws = connect(sim.url)
        frames = coinbase_session(ws, 300)
        ws.send(orjson.dumps({"type": "unsubscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
        ws.send(orjson.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
        ws.settimeout(3)
        try:
            while True:
                frames.append(orjson.loads(ws.recv()))
        except websocket.WebSocketTimeoutException:
            pass
        ws.close()
    assert [f["sequence_num"] for f in frames] == list(range(len(frames)))  # one sequence across resubscriptions
    snapshots = [e for f in frames for e in f["events"] if e.get("type") == "snapshot"]
    assert [s["product_id"] for s in snapshots] == ["BTC-USD", "ETH-USD", "BTC-USD"]
    assert len(snapshots[2]["updates"]) > 1000
    # The fresh snapshot plus the updates after it make the final book: none is missing or applied twice.
    assert rebuild(frames) == coinbase_reference(coinbase_messages())
    btc_after = [
        e for f in frames[frames.index(next(f for f in frames if snapshots[2] in f["events"])) :] for e in f["events"]
    ]
    btc_updates = [e for e in updates if e["product_id"] == "BTC-USD"]
    sent_after = [e for e in btc_after if e.get("type") == "update" and e["product_id"] == "BTC-USD"]
    assert sent_after == btc_updates[len(btc_updates) - len(sent_after) :]


@pytest.mark.parametrize("fault", ["drop_every", "swap_every", "cross_every"])
def test_coinbase_depth_faults(fault: str) -> None:
    updates = recorded_updates()
    tape = coinbase_tape(**{fault: 100})
    sent_count = len(updates) - (7 if fault == "drop_every" else 0)
    with running(read_trades(COINBASE_RECORDING), depth=tape, exchange="coinbase") as sim:
        ws = connect(sim.url)
        frames = coinbase_session(ws, sent_count)
        ws.close()
    numbers = [f["sequence_num"] for f in frames]
    sent = [e for f in frames[3:] for e in f["events"]]
    if fault == "drop_every":
        # The dropped updates keep their sequence numbers: the client sees the holes.
        assert tape.dropped == 7
        holes = sorted(set(range(numbers[-1] + 1)) - set(numbers))
        assert len(holes) == 7
        assert sent == [u for i, u in enumerate(updates, 1) if i % 100]
    elif fault == "swap_every":
        assert tape.swapped == 7
        assert sorted(numbers) == list(range(len(numbers)))
        late = [i for i in range(1, len(numbers)) if numbers[i] < numbers[i - 1]]
        assert len(late) == 7  # each swapped update arrives after the next one, with its own (earlier) number
        assert sorted(sent, key=updates.index) == updates
    else:
        assert tape.crossed == 7
        crossing = [e for e in sent if any(u["price_level"] == CROSSING_PRICE for u in e["updates"])]
        assert len(crossing) == 7
        assert [{**e, "updates": e["updates"][:-1]} for e in crossing] == [updates[i - 1] for i in range(100, 701, 100)]


# ------------------------------------------------------------------------------------------- Kraken
def checksum(bids: RefSide, asks: RefSide) -> int:
    """Kraken's documented CRC32, written out independently (as tests/books/test_kraken_sync.py does)."""

    def text(levels: list[tuple[Decimal, Decimal]]) -> str:
        return "".join(f"{p:f}".replace(".", "").lstrip("0") + f"{q:f}".replace(".", "").lstrip("0") for p, q in levels)

    return zlib.crc32((text(sorted(asks.items())[:10]) + text(sorted(bids.items(), reverse=True)[:10])).encode())


def kraken_frames(depth: int, **faults: int) -> tuple[list[dict[str, Any]], Any]:
    """Every ``book`` frame a depth-``depth`` subscription gets over the Binance 0808 recording, and the tape."""
    tape = read_depth([BTC_0808], rename=lambda symbol: exchange_symbol("kraken", symbol))
    assert tape is not None
    tape.apply_faults = False
    for name, every in faults.items():
        setattr(tape, name, every)
    # No heartbeat: the read below ends once the frames stop.
    with running(
        for_exchange(read_trades(BTC_0808), "kraken"), depth=tape, exchange="kraken", heartbeat_interval=3600
    ) as sim:
        ws = connect(sim.url + "/v2")
        ws.send(
            orjson.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USDT"], "depth": depth}})
        )
        ws.settimeout(3)
        frames = []
        try:
            while True:
                frames.append(json.loads(ws.recv(), parse_float=Decimal))
        except websocket.WebSocketTimeoutException:
            pass
        ws.close()
    return [f for f in frames if f.get("channel") == "book"], tape


def client_books(frames: list[dict[str, Any]], depth: int) -> list[tuple[RefSide, RefSide, int]]:
    """The client's book after each frame (plain dicts, truncated to the depth) and the frame's checksum."""
    bids: RefSide = {}
    asks: RefSide = {}
    out = []
    for frame in frames:
        (data,) = frame["data"]
        bids, asks = ({}, {}) if frame["type"] == "snapshot" else (dict(bids), dict(asks))
        for side, rows in ((bids, data["bids"]), (asks, data["asks"])):
            apply_rows(side, [[str(row["price"]), str(row["qty"])] for row in rows])
        bids = {p: bids[p] for p in heapq.nlargest(depth, bids)}
        asks = {p: asks[p] for p in heapq.nsmallest(depth, asks)}
        out.append((bids, asks, data["checksum"]))
    return out


def test_kraken_book_frames_derived_from_binance_carry_kraken_s_checksum_at_the_subscribed_depth() -> None:
    frames, _ = kraken_frames(25)
    assert frames[0]["type"] == "snapshot"
    assert all(f["type"] == "update" for f in frames[1:])
    assert len(frames) > 1000
    (first,) = frames[1]["data"]
    assert set(first) == {"symbol", "bids", "asks", "checksum", "timestamp"}
    assert first["timestamp"].startswith("2024-08-08T")
    books = client_books(frames, 25)
    assert all(checksum(bids, asks) == expected for bids, asks, expected in books)
    # The last frame leaves the Binance 0808 book (rebuilt in the test) seen through depth 25.
    final_id = read_depth([BTC_0808]).events[-1].last_id  # type: ignore[union-attr]
    bids, asks, _ = binance_reference(through=final_id)
    assert books[-1][:2] == (
        {p: bids[p] for p in heapq.nlargest(25, bids)},
        {p: asks[p] for p in heapq.nsmallest(25, asks)},
    )


@pytest.mark.parametrize("fault", ["drop_every", "swap_every", "cross_every", "checksum_every"])
def test_kraken_depth_faults_make_exactly_the_client_s_check_fail(fault: str) -> None:
    clean, _ = kraken_frames(10)
    frames, tape = kraken_frames(10, **{fault: 200})
    books = client_books(frames, 10)
    wrong = [i for i, (bids, asks, expected) in enumerate(books) if checksum(bids, asks) != expected]
    crossed = [i for i, (bids, asks, _) in enumerate(books) if bids and asks and max(bids) >= min(asks)]
    if fault == "drop_every":
        assert tape.dropped == 17
        assert len(frames) < len(clean)
        assert wrong  # a lost change of the top 10 fails the next checksum
    elif fault == "swap_every":
        assert tape.swapped == 17
        assert len(frames) == len(clean)
        assert wrong
    elif fault == "cross_every":
        assert tape.crossed == 17
        # The crossing update's checksum matches the crossed book: only the crossed check finds it (the later ones
        # fail because the client, which should have resynced, still holds the crossing bid).
        assert crossed
        assert all(i > crossed[0] for i in wrong)
        assert any(Decimal(CROSSING_PRICE) in bids for bids, _, _ in books)
    else:
        assert tape.corrupted == 17
        assert len(frames) == len(clean)
        assert 1 <= len(wrong) <= 17
        assert all(books[i][2] == (checksum(*books[i][:2]) + 1) % (1 << 32) for i in wrong)


def test_depth_fault_options_are_checked_and_the_kraken_derivation_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    options: dict[str, Any] = {"replay": [str(BTC_0808)], "synthetic": False, "present": False}
    with pytest.raises(CommandError, match="--depth-checksum-every: only kraken"):
        build_depth({**options, "depth_checksum_every": 10}, "binance")
    with pytest.raises(CommandError, match="--depth-cross-every must be 0"):
        build_depth({**options, "depth_cross_every": 1}, "binance")
    with caplog.at_level(logging.INFO, logger="simulator"):
        tape = build_depth({**options, "depth_cross_every": 5, "depth_checksum_every": 7}, "kraken")
    assert tape is not None
    assert (tape.cross_every, tape.checksum_every, tape.apply_faults) == (5, 7, False)
    assert tape.symbols() == {"BTC/USDT"}
    assert any("DERIVED from the Binance depth recording" in r.getMessage() for r in caplog.records)
    coinbase = build_depth({**options, "replay": [str(COINBASE_RECORDING)], "depth_drop_every": 3}, "coinbase")
    assert coinbase is not None
    assert (len(coinbase), coinbase.drop_every, coinbase.symbols()) == (773, 3, set(PRODUCTS))
    assert build_depth({**options, "present": True}, "coinbase") is None
