"""Binance diff depth + REST snapshot sync on the bundled recording: the documented procedure, each fault, and the
final book against one rebuilt independently from the same frames."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from books.binance import BinanceBookSync, Levels
from books.book import levels_of, parse_levels
from books.sync import BAD_DATA, CROSSED, SEQUENCE_GAP, STALE_SNAPSHOT
from tests.books.frames import (
    BINANCE_SNAPSHOT_ID,
    binance_deltas,
    binance_items,
    binance_reference,
    binance_snapshot,
    binance_snapshot_at,
    sorted_levels,
)

pytestmark = pytest.mark.unit


def replay(sync: BinanceBookSync, items: list[tuple[str, Any]]) -> None:
    for kind, payload in items:
        if kind == "snapshot":
            sync.on_snapshot(payload)
        else:
            sync.on_delta(payload)


def assert_equals_reference(sync: BinanceBookSync) -> None:
    """The book holds exactly the independently rebuilt book at the sync's last update id."""
    bids, asks, last = binance_reference(sync.last_update_id)
    assert last == sync.last_update_id
    got_bids, got_asks = levels_of(sync.book)
    assert {"bids": list(got_bids), "asks": list(got_asks)} == sorted_levels(bids, asks)


def synced_after(count: int) -> tuple[BinanceBookSync, list[dict[str, Any]]]:
    """A book synced on the recording's snapshot and first ``count`` events after it, and the events left."""
    sync = BinanceBookSync("BTCUSDT")
    sync.on_snapshot(binance_snapshot())
    after = [event for event in binance_deltas() if event["u"] > BINANCE_SNAPSHOT_ID]
    for event in after[:count]:
        sync.on_delta(event)
    assert sync.valid
    return sync, after[count:]


def test_the_recording_buffers_three_events_then_syncs_on_its_own_snapshot() -> None:
    items = binance_items()
    snapshot_at = next(i for i, (kind, _) in enumerate(items) if kind == "snapshot")
    sync = BinanceBookSync("BTCUSDT")
    replay(sync, items[:snapshot_at])
    assert (sync.valid, sync.snapshot_needed, sync.buffered) == (False, True, 3)
    replay(sync, items[snapshot_at : snapshot_at + 1])
    # The first two buffered events end before lastUpdateId (dropped); the third (U=...208, u=...224) straddles it.
    assert (sync.valid, sync.snapshot_needed, sync.buffered) == (True, False, 0)
    assert sync.last_update_id == 50093239224
    assert sync.book.event_ms == 1723161255408
    # The snapshot's 1,000 levels a side reach this far; beyond, the book has only what events touched since.
    assert sync.snapshot_bounds == (Decimal("61631.55000000"), Decimal("62053.18000000"))


def test_replaying_the_whole_recording_ends_equal_to_an_independent_rebuild() -> None:
    sync = BinanceBookSync("BTCUSDT")
    replay(sync, binance_items())
    assert (sync.valid, sync.resyncs, sync.syncs, sync.last_break) == (True, 0, 1, None)
    assert sync.last_update_id == binance_deltas()[-1]["u"]
    assert sync.book.event_ms == binance_deltas()[-1]["E"]
    # Independently: the snapshot's dicts plus every later event's levels (tests/books/frames.py, plain dict code).
    bids, asks, _ = binance_reference()
    got_bids, got_asks = levels_of(sync.book)
    assert {"bids": list(got_bids), "asks": list(got_asks)} == sorted_levels(bids, asks)
    assert len(got_bids) > 900
    assert len(got_asks) > 900
    assert not sync.book.crossed()
    # The exact strings come back out (the snapshot's formatting, trailing zeros included).
    top = sync.book.as_lists(1)
    assert top["bids"][0][0] == format(max(bids), "f")
    assert top["bids"][0][0].endswith("000000")


def resync_and_finish(sync: BinanceBookSync, rest: list[dict[str, Any]], snapshot_after: int) -> None:
    """Feed ``rest`` with a fresh snapshot (as of the event ``snapshot_after`` of ``rest``) once it has been fed,
    the way a REST call answers while events keep coming: the book must be valid again and equal the reference."""
    for index, event in enumerate(rest):
        sync.on_delta(event)
        if index == snapshot_after:
            assert (sync.valid, sync.snapshot_needed) == (False, True)
            sync.on_snapshot(binance_snapshot_at(rest[snapshot_after - 2]["u"]))
            assert (sync.valid, sync.snapshot_needed) == (True, False)
            assert not sync.snapshot_needed
    assert sync.valid
    assert sync.last_update_id == rest[-1]["u"]
    assert_equals_reference(sync)


def test_a_dropped_event_breaks_the_book_and_a_new_snapshot_restores_it() -> None:
    sync, rest = synced_after(100)
    sync.on_delta(rest[1])  # rest[0] never arrives
    assert sync.valid is False
    assert sync.snapshot_needed
    assert sync.resyncs == 1
    assert sync.last_break is not None
    assert sync.last_break.reason == SEQUENCE_GAP
    assert sync.book.best_bid() is None  # a broken book shows nothing rather than something wrong
    resync_and_finish(sync, rest[2:600], snapshot_after=10)
    assert (sync.resyncs, sync.syncs) == (1, 2)


def test_an_out_of_order_event_breaks_the_book_and_a_new_snapshot_restores_it() -> None:
    sync, rest = synced_after(200)
    sync.on_delta(rest[1])
    sync.on_delta(rest[0])  # arrives late: the book is already broken, it is buffered and counts no second resync
    assert (sync.valid, sync.resyncs, sync.last_break and sync.last_break.reason) == (False, 1, SEQUENCE_GAP)
    resync_and_finish(sync, rest[2:500], snapshot_after=5)


def test_a_repeated_event_breaks_the_book() -> None:
    sync, rest = synced_after(50)
    sync.on_delta(rest[0])
    sync.on_delta(rest[0])
    assert (sync.valid, sync.resyncs) == (False, 1)


def test_a_crossed_book_breaks_and_a_new_snapshot_restores_it() -> None:
    sync, rest = synced_after(300)
    ask = sync.book.best_ask()
    assert ask is not None
    last = sync.last_update_id
    # In sequence, but it puts a bid above the best ask: whatever produced it, the book is not the exchange's.
    crossing = {
        "e": "depthUpdate",
        "E": 1,
        "s": "BTCUSDT",
        "U": last + 1,
        "u": last + 1,
        "b": [[str(ask[0] + 1), "1"]],
        "a": [],
    }
    sync.on_delta(crossing)
    assert (sync.valid, sync.resyncs, sync.last_break and sync.last_break.reason) == (False, 1, CROSSED)
    resync_and_finish(sync, rest[:400], snapshot_after=20)


def test_a_snapshot_older_than_the_buffer_is_refused_and_the_next_one_syncs() -> None:
    deltas = [event for event in binance_deltas() if event["u"] > BINANCE_SNAPSHOT_ID]
    sync = BinanceBookSync("BTCUSDT")
    for event in deltas[10:20]:
        sync.on_delta(event)
    sync.on_snapshot(binance_snapshot())  # ends before deltas[10] begins: events in between are missing
    assert (sync.valid, sync.snapshot_needed, sync.resyncs) == (False, True, 0)
    assert sync.last_break is not None
    assert sync.last_break.reason == STALE_SNAPSHOT
    assert sync.buffered == 10
    sync.on_snapshot(binance_snapshot_at(deltas[14]["u"]))
    assert (sync.valid, sync.buffered, sync.last_update_id) == (True, 0, deltas[19]["u"])
    assert_equals_reference(sync)


def test_events_that_end_before_the_snapshot_are_dropped_even_after_it() -> None:
    deltas = [event for event in binance_deltas() if event["u"] > BINANCE_SNAPSHOT_ID]
    sync = BinanceBookSync("BTCUSDT")
    sync.on_snapshot(binance_snapshot_at(deltas[5]["u"]))  # the REST answer overtook events still in flight
    assert sync.valid
    for event in deltas[3:30]:
        sync.on_delta(event)
    assert (sync.valid, sync.resyncs, sync.last_update_id) == (True, 0, deltas[29]["u"])
    assert_equals_reference(sync)


def test_a_snapshot_nobody_asked_for_is_ignored() -> None:
    sync, rest = synced_after(100)
    sync.on_snapshot(binance_snapshot())  # a late answer to an old request: 100 events older than the book
    assert (sync.valid, sync.resyncs, sync.syncs) == (True, 0, 1)
    for event in rest[:50]:
        sync.on_delta(event)
    assert (sync.valid, sync.resyncs) == (True, 0)
    assert_equals_reference(sync)


def test_a_first_event_that_does_not_straddle_the_snapshot_breaks() -> None:
    deltas = [event for event in binance_deltas() if event["u"] > BINANCE_SNAPSHOT_ID]
    sync = BinanceBookSync("BTCUSDT")
    sync.on_snapshot(binance_snapshot_at(deltas[5]["u"]))
    sync.on_delta(deltas[7])  # deltas[6] was lost
    assert (sync.valid, sync.resyncs, sync.last_break and sync.last_break.reason) == (False, 1, SEQUENCE_GAP)


@pytest.mark.parametrize(
    "change",
    [{"U": "1"}, {"b": [["61000.00", "-1"]]}, {"a": [["abc", "1"]]}, {"b": [["0", "1"]]}, {"a": [["1"]]}],
)
def test_a_malformed_event_breaks_the_book(change: dict[str, Any]) -> None:
    sync, rest = synced_after(10)
    sync.on_delta({**rest[0], **change})
    assert (sync.valid, sync.resyncs, sync.last_break and sync.last_break.reason) == (False, 1, BAD_DATA)


def test_a_malformed_snapshot_is_refused() -> None:
    sync = BinanceBookSync("BTCUSDT")
    sync.on_snapshot({"lastUpdateId": 5, "bids": [["1.0", 1.5]], "asks": []})  # a float quantity
    assert (sync.valid, sync.snapshot_needed) == (False, True)
    assert sync.last_break is not None
    assert sync.last_break.reason == BAD_DATA
    assert "float" in sync.last_break.detail


def test_the_buffer_keeps_the_newest_events() -> None:
    deltas = binance_deltas()
    sync = BinanceBookSync("BTCUSDT", max_buffer=5)
    for event in deltas[:50]:
        sync.on_delta(event)
    assert sync.buffered == 5
    sync.on_snapshot(binance_snapshot_at(deltas[46]["u"]))
    assert sync.valid
    assert sync.last_update_id == deltas[49]["u"]
    assert Decimal(sync.book.as_lists(1)["asks"][0][0]) > 0


def test_levels_parsed_by_the_caller_are_applied_as_given_buffered_or_not() -> None:
    # The ingest feed validates an event's levels and hands them over: the sync uses them and parses nothing again.
    # Here they differ from the event's own text, so the book shows which ones were applied.
    after = [event for event in binance_deltas() if event["u"] > BINANCE_SNAPSHOT_ID]
    sync = BinanceBookSync("BTCUSDT")
    buffered: Levels = ([(Decimal("61000.5"), Decimal("1"))], [])
    sync.on_delta(after[0], buffered)  # buffered: no snapshot yet
    sync.on_snapshot(binance_snapshot())
    assert sync.valid
    assert sync.last_update_id == after[0]["u"]
    assert sync.book.bids.levels[Decimal("61000.5")] == Decimal("1")
    sync.on_delta(after[1], ([], [(Decimal("62500.25"), Decimal("2"))]))
    assert sync.book.asks.levels[Decimal("62500.25")] == Decimal("2")
    sync.on_delta(after[2])  # no levels given: parsed from the event
    bids = parse_levels(after[2]["b"], "b")
    assert all(sync.book.bids.levels.get(price) == qty for price, qty in bids if qty)
