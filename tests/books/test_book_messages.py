"""Snapshots in parts (:mod:`books.messages`) and how the keeper puts them together (:class:`books.keeper.BookKeeper`),
without I/O: the whole book when every part came in order, nothing when they did not, and a restart that re-reads
from the first part of a snapshot still arriving."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from books.keeper import BookKeeper, BookMessage, BookMessageError, decode
from books.messages import MAX_PARTS, SCHEMA_VERSION, snapshot_messages

T0 = 1_723_161_000_000


def book(levels: int) -> dict[str, list[list[str]]]:
    """A book of ``levels`` levels a side around 100, best first."""
    return {
        "bids": [[f"{100 - i * 0.01:.2f}", "1.0"] for i in range(levels)],
        "asks": [[f"{100.01 + i * 0.01:.2f}", "2.0"] for i in range(levels + 3)],  # one side longer
    }


def parts(levels: dict[str, list[list[str]]], part_levels: int, last_id: int = 10, t: int = T0) -> list[BookMessage]:
    return [decode(m) for m in snapshot_messages("binance", "BTCUSDT", last_id, t, True, levels, 1, part_levels)]


def delta(first: int, last: int, t: int = T0 + 1) -> BookMessage:
    return decode(
        orjson.dumps(
            {
                "v": SCHEMA_VERSION,
                "exchange": "binance",
                "symbol": "BTCUSDT",
                "kind": "delta",
                "first_id": first,
                "last_id": last,
                "t": t,
                "valid": True,
                "bids": [["99.995", "5.0"]],
                "asks": [],
                "received_at": 1,
            }
        )
    )


def held(keeper: BookKeeper) -> dict[str, list[list[str]]] | None:
    market = keeper.market("binance", "BTCUSDT")
    return None if market.book is None else market.book.as_lists(10_000)


def test_a_small_book_is_one_message_and_a_big_one_consecutive_parts_of_both_sides() -> None:
    small = snapshot_messages("binance", "BTCUSDT", 10, T0, True, book(2), 1, 5)  # 2 bids, 5 asks
    assert len(small) == 1
    assert "part" not in orjson.loads(small[0])
    levels = book(10)
    messages = [orjson.loads(m) for m in snapshot_messages("binance", "BTCUSDT", 10, T0, True, levels, 1, 4)]
    assert [m["part"] for m in messages] == [[0, 4], [1, 4], [2, 4], [3, 4]]  # 13 asks: 4 parts of 4
    assert all(m["v"] == SCHEMA_VERSION and (m["last_id"], m["t"]) == (10, T0) for m in messages)
    assert [level for m in messages for level in m["bids"]] == levels["bids"]
    assert [level for m in messages for level in m["asks"]] == levels["asks"]
    assert messages[0]["bids"][0] == levels["bids"][0]  # the best prices first
    with pytest.raises(ValueError, match="more than"):
        snapshot_messages("binance", "BTCUSDT", 10, T0, True, book(MAX_PARTS + 1), 1, 1)


def test_the_parts_in_order_make_the_whole_book_applied_at_the_last_part() -> None:
    levels = book(10)
    keeper = BookKeeper(10, 50)
    for offset, message in enumerate(parts(levels, 4)):
        assert held(keeper) is None  # nothing before the last part
        keeper.apply(offset, message)
    assert held(keeper) == levels
    whole = BookKeeper(10, 50)
    whole.apply(0, parts(levels, 100)[0])
    assert held(whole) == levels
    # The book goes on from the snapshot's last id; a restart re-reads from its first part.
    keeper.apply(4, delta(11, 11))
    assert keeper.market("binance", "BTCUSDT").last_id == 11
    assert keeper.replay_from(5) == 0
    out = keeper.take()
    assert (out.applied, out.incomplete_snapshots, out.breaks) == (2, 0, 0)


def test_parts_that_do_not_follow_one_another_are_dropped_and_counted() -> None:
    levels = book(10)
    first, second, third, fourth = parts(levels, 4)
    keeper = BookKeeper(10, 50)
    keeper.apply(0, first)
    keeper.apply(1, third)  # the second is missing
    keeper.apply(2, fourth)
    assert held(keeper) is None
    # A delta between the parts: the book (none here) goes on as before the first part.
    keeper.apply(3, first)
    keeper.apply(4, delta(11, 11))
    keeper.apply(5, second)
    assert held(keeper) is None
    # Parts of another snapshot (another last id) mixed in.
    keeper.apply(6, first)
    keeper.apply(7, parts(levels, 4, last_id=12)[1])
    assert held(keeper) is None
    assert keeper.take().incomplete_snapshots == 3
    # Parts without their beginning (a consumer that started after it): waited over, not counted.
    late = BookKeeper(10, 50)
    for offset, message in enumerate([second, third, fourth]):
        late.apply(offset, message)
    assert held(late) is None
    assert late.take().incomplete_snapshots == 0
    # A held book stays as it was while a snapshot in parts arrives, and while one fails.
    keeper = BookKeeper(10, 50)
    keeper.apply(0, parts(book(2), 100, last_id=8)[0])
    keeper.apply(1, first)
    assert held(keeper) == book(2)
    assert keeper.replay_from(2) == 0
    keeper.apply(2, delta(9, 9))
    assert held(keeper) is not None
    assert keeper.market("binance", "BTCUSDT").last_id == 9


def test_a_restart_reads_again_from_the_first_part_of_a_snapshot_still_arriving() -> None:
    first, second, *_rest = parts(book(10), 4)
    keeper = BookKeeper(10, 50)
    keeper.apply(40, first)
    keeper.apply(41, second)
    assert keeper.replay_from(42) == 40  # no book held yet, but the parts so far must be read again


def message(**fields: Any) -> bytes:
    base: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "kind": "snapshot",
        "first_id": 1,
        "last_id": 1,
        "t": T0,
        "valid": True,
        "bids": [],
        "asks": [],
    }
    return orjson.dumps({**base, **fields})


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"part": [0, 2], "v": 1}, "only a valid snapshot of schema 2"),
        ({"part": [0, 2], "kind": "delta"}, "only a valid snapshot of schema 2"),
        ({"part": [0, 2], "valid": False, "last_id": None}, "only a valid snapshot of schema 2"),
        ({"part": [2, 2]}, "part must be"),
        ({"part": [-1, 2]}, "part must be"),
        ({"part": [0, MAX_PARTS + 1]}, "part must be"),
        ({"part": [0, True]}, "part must be"),
        ({"part": "0/2"}, "part must be"),
        ({"part": [0, 1, 2]}, "part must be"),
        ({"v": 3}, "unknown schema version"),
    ],
)
def test_a_bad_part_is_refused_with_its_reason(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(BookMessageError, match=reason):
        decode(message(**fields))


def test_schema_1_messages_are_still_read() -> None:
    assert decode(message(v=1)).part == (0, 1)
    assert decode(message(part=[1, 3])).part == (1, 3)
