"""Kraken WebSocket v2 ``book`` sync: the checksum on Kraken's documented example, then each fault on a v2 stream.

The project holds no Kraken book recording. The stream tests use frames in Kraken's v2 layout DERIVED FROM THE REAL
BINANCE RECORDING (``data/binance-spot-ws``): the Binance book rebuilt with plain dicts, seen through a Kraken
subscription of depth 25 (each message carries the levels of that view that changed, a removed level as
``"qty": 0``, and none for a level pushed out of scope, as Kraken documents), each message's checksum computed by the
independent implementation below, which is first checked on Kraken's documented example. They are real-looking
values in Kraken's layout, not Kraken's own frames.
"""

from __future__ import annotations

import heapq
import json
import zlib
from decimal import Decimal
from functools import cache
from typing import Any

import pytest

from books.book import levels_of
from books.kraken import KrakenBookSync, kraken_checksum
from books.sync import BAD_DATA, CHECKSUM_MISMATCH, CROSSED
from tests.books.frames import BINANCE_SNAPSHOT_ID, RefSide, apply_rows, binance_deltas, binance_snapshot

pytestmark = pytest.mark.unit

SYMBOL = "BTC/USD"
DEPTH = 25

# Kraken's documented example (docs.kraken.com, WebSocket v2 "book" channel and "Book checksum (WebSocket v2)"):
# the BTC/USD snapshot, numbers on the wire, and its checksum.
DOCUMENTED_SNAPSHOT = """{"channel": "book", "type": "snapshot", "data": [{"symbol": "BTC/USD",
 "bids": [{"price": 45283.5, "qty": 0.10000000}, {"price": 45283.4, "qty": 1.54582015},
          {"price": 45282.1, "qty": 0.10000000}, {"price": 45281.0, "qty": 0.10000000},
          {"price": 45280.3, "qty": 1.54592586}, {"price": 45279.0, "qty": 0.07990000},
          {"price": 45277.6, "qty": 0.03310103}, {"price": 45277.5, "qty": 0.30000000},
          {"price": 45277.3, "qty": 1.54602737}, {"price": 45276.6, "qty": 0.15445238}],
 "asks": [{"price": 45285.2, "qty": 0.00100000}, {"price": 45286.4, "qty": 1.54571953},
          {"price": 45286.6, "qty": 1.54571109}, {"price": 45289.6, "qty": 1.54560911},
          {"price": 45290.2, "qty": 0.15890660}, {"price": 45291.8, "qty": 1.54553491},
          {"price": 45294.7, "qty": 0.04454749}, {"price": 45296.1, "qty": 0.35380000},
          {"price": 45297.5, "qty": 0.09945542}, {"price": 45299.5, "qty": 0.18772827}],
 "checksum": 3310070434}]}"""
DOCUMENTED_CHECKSUM = 3310070434


def decode(frame: str) -> Any:
    """As Kraken tells clients to: decimals kept exact."""
    return json.loads(frame, parse_float=Decimal)


def reference_checksum(bids: RefSide, asks: RefSide) -> int:
    """Kraken's documented algorithm written out independently of :mod:`books.kraken`."""

    def text(levels: list[tuple[Decimal, Decimal]]) -> str:
        return "".join(f"{p:f}".replace(".", "").lstrip("0") + f"{q:f}".replace(".", "").lstrip("0") for p, q in levels)

    return zlib.crc32((text(sorted(asks.items())[:10]) + text(sorted(bids.items(), reverse=True)[:10])).encode())


def view(side: RefSide, descending: bool) -> RefSide:
    """The ``DEPTH`` best levels of a side."""
    best = heapq.nlargest(DEPTH, side) if descending else heapq.nsmallest(DEPTH, side)
    return {price: side[price] for price in best}


def frame(kind: str, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]], checksum: int) -> str:
    """A v2 ``book`` frame, numbers on the wire as Kraken sends them."""

    def levels(rows: list[tuple[Decimal, Decimal]]) -> str:
        return ",".join(f'{{"price":{p:f},"qty":{q:f}}}' for p, q in rows)

    stamp = ',"timestamp":"2024-08-09T00:00:01.123456Z"' if kind == "update" else ""
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{SYMBOL}","bids":[{levels(bids)}],'
        f'"asks":[{levels(asks)}],"checksum":{checksum}{stamp}}}]}}'
    )


@cache
def kraken_frames() -> tuple[tuple[str, ...], tuple[tuple[RefSide, RefSide], ...]]:
    """The derived stream (see the module docstring) and, per frame, the depth-25 view it leaves (do not modify)."""
    snapshot = binance_snapshot()
    full: tuple[RefSide, RefSide] = ({}, {})
    apply_rows(full[0], snapshot["bids"])
    apply_rows(full[1], snapshot["asks"])
    shown = (view(full[0], True), view(full[1], False))
    frames = [
        frame("snapshot", sorted(shown[0].items(), reverse=True), sorted(shown[1].items()), reference_checksum(*shown))
    ]
    views = [shown]
    for event in binance_deltas():
        if event["u"] <= BINANCE_SNAPSHOT_ID:
            continue
        apply_rows(full[0], event["b"])
        apply_rows(full[1], event["a"])
        new = (view(full[0], True), view(full[1], False))
        changes = []
        for side in (0, 1):
            changed = [(p, q) for p, q in new[side].items() if shown[side].get(p) != q]
            removed = [(p, Decimal(0)) for p in shown[side] if p not in new[side] and p not in full[side]]
            changes.append(changed + removed)
        if changes[0] or changes[1]:
            frames.append(frame("update", changes[0], changes[1], reference_checksum(*new)))
            views.append(new)
        shown = new
    return tuple(frames), tuple(views)


def top_change(views: tuple[tuple[RefSide, RefSide], ...], start: int) -> int:
    """The first update from ``start`` on that changes the top 10 levels: the checksum covers only those, so losing
    a change deeper down goes unseen until it reaches them (docs/BOOKS.md, "Kraken")."""

    def top(index: int) -> tuple[list[tuple[Decimal, Decimal]], ...]:
        bids, asks = views[index]
        return sorted(bids.items(), reverse=True)[:10], sorted(asks.items())[:10]

    return next(i for i in range(start, len(views)) if top(i) != top(i - 1))


def test_the_documented_example_checksum() -> None:
    data = decode(DOCUMENTED_SNAPSHOT)["data"][0]
    bids, asks = ({level["price"]: level["qty"] for level in data[side]} for side in ("bids", "asks"))
    assert reference_checksum(bids, asks) == DOCUMENTED_CHECKSUM
    sync = KrakenBookSync(SYMBOL, depth=10)
    sync.on_message(decode(DOCUMENTED_SNAPSHOT))
    assert (sync.valid, sync.last_break) == (True, None)
    assert kraken_checksum(sync.book) == DOCUMENTED_CHECKSUM
    assert sync.book.as_lists(1) == {"bids": [["45283.5", "0.10000000"]], "asks": [["45285.2", "0.00100000"]]}


def test_the_documented_example_with_one_digit_changed_fails() -> None:
    sync = KrakenBookSync(SYMBOL, depth=10)
    sync.on_message(decode(DOCUMENTED_SNAPSHOT.replace("1.54582015", "1.54582016")))
    assert (sync.valid, sync.snapshot_needed) == (False, True)
    assert sync.last_break is not None
    assert sync.last_break.reason == CHECKSUM_MISMATCH


def test_floats_are_refused_their_digits_are_lost() -> None:
    # json.loads without parse_float: 0.10000000 became 0.1, which would fail the checksum for the wrong reason.
    sync = KrakenBookSync(SYMBOL, depth=10)
    sync.on_message(json.loads(DOCUMENTED_SNAPSHOT))
    assert sync.valid is False
    assert sync.last_break is not None
    assert sync.last_break.reason == BAD_DATA
    assert "float" in sync.last_break.detail


def test_truncation_to_the_subscribed_depth_is_part_of_the_checksum() -> None:
    sync = KrakenBookSync(SYMBOL, depth=10)
    sync.on_message(decode(DOCUMENTED_SNAPSHOT))
    # A new best bid: 11 bids locally, and Kraken sends no delete for the 11th (45276.6), which falls out of scope.
    message = decode(DOCUMENTED_SNAPSHOT)["data"][0]
    bids = {level["price"]: level["qty"] for level in message["bids"]}
    asks = {level["price"]: level["qty"] for level in message["asks"]}
    bids[Decimal("45284.0")] = Decimal("2.00000000")
    del bids[Decimal("45276.6")]
    update = frame("update", [(Decimal("45284.0"), Decimal("2.00000000"))], [], reference_checksum(bids, asks))
    sync.on_message(decode(update))
    assert sync.valid
    assert len(sync.book.bids) == 10
    assert sync.book.bids.top(10)[-1][0] == Decimal("45277.3")
    assert sync.book.event_ms == 1723161601123


def test_the_derived_stream_syncs_and_stays_valid_to_the_end() -> None:
    frames, views = kraken_frames()
    assert len(frames) > 3000
    sync = KrakenBookSync(SYMBOL, depth=DEPTH)
    for text in frames:
        sync.on_message(decode(text))
        assert sync.valid, sync.last_break
    bids, asks = levels_of(sync.book)
    assert (list(bids), list(asks)) == (sorted(views[-1][0].items(), reverse=True), sorted(views[-1][1].items()))
    assert (sync.resyncs, sync.syncs) == (0, 1)


def resync_and_finish(
    sync: KrakenBookSync, frames: tuple[str, ...], views: tuple[tuple[RefSide, RefSide], ...], at: int
) -> None:
    """Updates before the resubscription's snapshot are dropped; after it (the view at ``at``) the book is valid and
    stays so to the end, equal to the last view."""
    for text in frames[at - 5 : at + 1]:
        sync.on_message(decode(text))
    assert (sync.valid, sync.snapshot_needed) == (False, True)
    bids, asks = views[at]
    sync.on_message(
        decode(
            frame("snapshot", sorted(bids.items(), reverse=True), sorted(asks.items()), reference_checksum(bids, asks))
        )
    )
    assert sync.valid
    for text in frames[at + 1 :]:
        sync.on_message(decode(text))
    assert sync.valid
    got_bids, got_asks = levels_of(sync.book)
    assert (list(got_bids), list(got_asks)) == (
        sorted(views[-1][0].items(), reverse=True),
        sorted(views[-1][1].items()),
    )


def synced(frames: tuple[str, ...], upto: int) -> KrakenBookSync:
    sync = KrakenBookSync(SYMBOL, depth=DEPTH)
    for text in frames[:upto]:
        sync.on_message(decode(text))
    assert sync.valid
    return sync


def test_a_dropped_update_fails_the_next_checksum_and_a_new_snapshot_restores_the_book() -> None:
    frames, views = kraken_frames()
    lost = top_change(views, 500)
    sync = synced(frames, lost)
    sync.on_message(decode(frames[lost + 1]))  # frames[lost] never arrives
    assert (sync.valid, sync.resyncs, sync.last_break and sync.last_break.reason) == (False, 1, CHECKSUM_MISMATCH)
    resync_and_finish(sync, frames, views, at=520)
    assert (sync.resyncs, sync.syncs) == (1, 2)


def test_an_out_of_order_update_fails_the_checksum_and_a_new_snapshot_restores_the_book() -> None:
    frames, views = kraken_frames()
    late = top_change(views, 1000)
    sync = synced(frames, late)
    sync.on_message(decode(frames[late + 1]))
    sync.on_message(decode(frames[late]))
    assert (sync.valid, sync.resyncs, sync.last_break and sync.last_break.reason) == (False, 1, CHECKSUM_MISMATCH)
    resync_and_finish(sync, frames, views, at=1100)


def test_a_corrupted_checksum_breaks_the_book_and_a_new_snapshot_restores_it() -> None:
    frames, views = kraken_frames()
    sync = synced(frames, 1500)
    message = decode(frames[1500])
    message["data"][0]["checksum"] ^= 1
    sync.on_message(message)
    assert (sync.valid, sync.resyncs, sync.last_break and sync.last_break.reason) == (False, 1, CHECKSUM_MISMATCH)
    assert sync.book.best_ask() is None
    resync_and_finish(sync, frames, views, at=1600)


def test_a_crossed_book_with_a_good_checksum_still_breaks() -> None:
    frames, views = kraken_frames()
    sync = synced(frames, 2000)
    bids, asks = (dict(side) for side in views[1999])
    crossing = (min(asks) + 1, Decimal("1.00000000"))
    bids[crossing[0]] = crossing[1]
    bids = view(bids, True)
    sync.on_message(decode(frame("update", [crossing], [], reference_checksum(bids, asks))))
    assert (sync.valid, sync.resyncs, sync.last_break and sync.last_break.reason) == (False, 1, CROSSED)
    resync_and_finish(sync, frames, views, at=2100)


def test_updates_for_other_symbols_and_a_bad_depth() -> None:
    sync = KrakenBookSync("ETH/USD", depth=10)
    sync.on_message(decode(DOCUMENTED_SNAPSHOT))
    assert (sync.valid, sync.syncs, sync.last_break) == (False, 0, None)
    with pytest.raises(ValueError, match="depth must be one of"):
        KrakenBookSync(SYMBOL, depth=20)
