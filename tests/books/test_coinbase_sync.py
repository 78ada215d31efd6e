"""Coinbase Advanced Trade ``level2`` sync on the bundled recording (``l2_data`` messages, ``sequence_num`` per
connection): both products' books, each fault, and the resubscription's snapshot restoring them."""

from __future__ import annotations

from typing import Any

import pytest

from books.book import levels_of
from books.coinbase import CoinbaseBookSync, CoinbaseL2Connection
from books.sync import BAD_DATA, CROSSED, DISCONNECTED, SEQUENCE_GAP
from tests.books.frames import coinbase_messages, coinbase_reference, coinbase_snapshot_message, numbered, sorted_levels

pytestmark = pytest.mark.unit

PRODUCTS = ("BTC-USD", "ETH-USD")
LATER = "2026-08-09T21:06:30.000000Z"


def feed(connection: CoinbaseL2Connection, messages: list[dict[str, Any]]) -> None:
    for message in messages:
        connection.on_message(message)


def assert_equal_reference(connection: CoinbaseL2Connection, messages: list[dict[str, Any]]) -> None:
    """Each product's book equals the one rebuilt independently from every l2 message the exchange sent."""
    reference = coinbase_reference(messages)
    for product in PRODUCTS:
        bids, asks = levels_of(connection.books[product].book)
        assert {"bids": list(bids), "asks": list(asks)} == sorted_levels(*reference[product])


def l2_indexes(messages: list[dict[str, Any]], product: str) -> list[int]:
    """Where the product's l2 updates are."""
    return [
        i
        for i, m in enumerate(messages)
        if m.get("channel") == "l2_data"
        and m["events"][0]["type"] == "update"
        and m["events"][0]["product_id"] == product
    ]


def test_the_recording_is_advanced_trade_level2_with_one_sequence_per_connection() -> None:
    messages = coinbase_messages()
    assert {m["channel"] for m in messages} >= {"l2_data", "market_trades", "heartbeats"}
    assert [m["sequence_num"] for m in messages] == list(range(len(messages)))
    sides = {u["side"] for m in messages if m["channel"] == "l2_data" for e in m["events"] for u in e["updates"]}
    assert sides == {"bid", "offer"}


def test_both_books_sync_on_the_recording_and_equal_an_independent_rebuild() -> None:
    messages = coinbase_messages()
    connection = CoinbaseL2Connection(PRODUCTS)
    assert connection.snapshot_needed() == list(PRODUCTS)
    feed(connection, messages)
    for product in PRODUCTS:
        sync = connection.books[product]
        assert (sync.valid, sync.resyncs, sync.syncs, sync.last_break) == (True, 0, 1, None)
        assert not sync.book.crossed()
        assert len(sync.book.bids) > 1000
        assert len(sync.book.asks) > 1000
    assert connection.snapshot_needed() == []
    assert_equal_reference(connection, messages)
    assert connection.books["BTC-USD"].book.event_ms is not None


def resubscribe(messages: list[dict[str, Any]], upto: int) -> list[dict[str, Any]]:
    """The snapshots a resubscription brings once the exchange sent ``messages[:upto]`` (each product's full book)."""
    reference = coinbase_reference(messages[:upto])
    return [coinbase_snapshot_message(product, *reference[product], LATER) for product in PRODUCTS]


def test_a_dropped_message_breaks_every_book_and_the_resubscription_restores_them() -> None:
    messages = coinbase_messages()
    dropped = l2_indexes(messages, "ETH-USD")[100]
    connection = CoinbaseL2Connection(PRODUCTS)
    feed(connection, messages[:dropped] + messages[dropped + 1 : dropped + 30])
    for product in PRODUCTS:  # the lost message was ETH-USD's, but a gap could have been anyone's
        sync = connection.books[product]
        assert (sync.valid, sync.resyncs, sync.snapshot_needed) == (False, 1, True)
        assert sync.last_break is not None
        assert sync.last_break.reason == SEQUENCE_GAP
    assert connection.snapshot_needed() == list(PRODUCTS)
    # Updates that arrive before the snapshot are dropped; the snapshot carries their effect.
    rest = resubscribe(messages, dropped + 40) + messages[dropped + 40 :]
    feed(connection, numbered(rest, start=messages[dropped + 29]["sequence_num"] + 1))
    assert [connection.books[p].valid for p in PRODUCTS] == [True, True]
    assert [connection.books[p].syncs for p in PRODUCTS] == [2, 2]
    assert_equal_reference(connection, messages)


def test_an_out_of_order_message_breaks_the_books_and_the_resubscription_restores_them() -> None:
    messages = coinbase_messages()
    late = l2_indexes(messages, "BTC-USD")[200]
    connection = CoinbaseL2Connection(PRODUCTS)
    feed(connection, [*messages[:late], messages[late + 1], messages[late]])
    for product in PRODUCTS:
        sync = connection.books[product]
        assert (sync.valid, sync.resyncs) == (False, 1)  # the late one is a second gap, counted no second time
    rest = resubscribe(messages, late + 10) + messages[late + 10 :]
    feed(connection, numbered(rest, start=messages[late]["sequence_num"] + 1))
    assert [connection.books[p].valid for p in PRODUCTS] == [True, True]
    assert [connection.books[p].resyncs for p in PRODUCTS] == [1, 1]
    assert_equal_reference(connection, messages)


def test_a_crossed_book_breaks_only_that_product_and_its_snapshot_restores_it() -> None:
    messages = coinbase_messages()
    at = l2_indexes(messages, "BTC-USD")[50]
    connection = CoinbaseL2Connection(PRODUCTS)
    feed(connection, messages[:at])
    btc = connection.books["BTC-USD"]
    ask = btc.book.best_ask()
    assert ask is not None
    crossing = {
        "channel": "l2_data",
        "events": [
            {
                "type": "update",
                "product_id": "BTC-USD",
                "updates": [{"side": "bid", "event_time": LATER, "price_level": str(ask[0] + 5), "new_quantity": "1"}],
            }
        ],
    }
    stream = numbered([*messages[at:], crossing], start=at)
    feed(connection, stream)
    assert (btc.valid, btc.resyncs, btc.last_break and btc.last_break.reason) == (False, 1, CROSSED)
    eth = connection.books["ETH-USD"]
    assert (eth.valid, eth.resyncs) == (True, 0)
    reference = coinbase_reference(messages)["BTC-USD"]
    feed(connection, numbered([coinbase_snapshot_message("BTC-USD", *reference, LATER)], start=len(stream) + at))
    assert (btc.valid, btc.syncs) == (True, 2)
    assert_equal_reference(connection, messages)


def test_a_lost_connection_breaks_every_book_and_sequence_numbers_start_again() -> None:
    messages = coinbase_messages()
    connection = CoinbaseL2Connection(PRODUCTS)
    feed(connection, messages[:300])
    connection.connection_lost()
    assert all(not s.valid and s.last_break and s.last_break.reason == DISCONNECTED for s in connection.books.values())
    feed(connection, numbered(resubscribe(messages, 400) + messages[400:], start=0))
    assert all(s.valid and s.resyncs == 1 for s in connection.books.values())
    assert_equal_reference(connection, messages)


def test_a_malformed_update_breaks_the_book() -> None:
    sync = CoinbaseBookSync("BTC-USD")
    sync.on_event(
        {"type": "snapshot", "updates": [{"side": "bid", "event_time": LATER, "price_level": "1", "new_quantity": "1"}]}
    )
    assert sync.valid
    sync.on_event(
        {"type": "update", "updates": [{"side": "buy", "event_time": LATER, "price_level": "1", "new_quantity": "1"}]}
    )
    assert (sync.valid, sync.last_break and sync.last_break.reason) == (False, BAD_DATA)
    assert sync.last_break is not None
    assert "side must be bid or offer" in sync.last_break.detail


def test_updates_before_the_first_snapshot_are_dropped() -> None:
    sync = CoinbaseBookSync("BTC-USD")
    sync.on_event(
        {"type": "update", "updates": [{"side": "bid", "event_time": LATER, "price_level": "1", "new_quantity": "1"}]}
    )
    assert (sync.valid, sync.book.best_bid(), sync.last_break) == (False, None, None)
