"""The L2 book: levels set and deleted in price order, best and top N, crossed, truncation, and the 1 s metrics
worked out by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from books.book import BookDataError, BookSide, L2Book, levels_of, parse_levels, to_decimal

pytestmark = pytest.mark.unit

D = Decimal


def book_of(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> L2Book:
    book = L2Book()
    book.apply_snapshot([(D(p), D(q)) for p, q in bids], [(D(p), D(q)) for p, q in asks], event_ms=7)
    return book


def test_levels_are_kept_in_price_order_and_zero_deletes() -> None:
    book = book_of([("99.5", "1"), ("100.0", "2"), ("98", "3")], [("101", "1"), ("100.5", "4")])
    assert book.best_bid() == (D("100.0"), D("2"))
    assert book.best_ask() == (D("100.5"), D("4"))
    book.apply([(D("100.0"), D("0")), (D("99.9"), D("5")), (D("50"), D("0"))], [(D("100.5"), D("0.5"))], event_ms=9)
    assert book.top(10) == (
        [(D("99.9"), D("5")), (D("99.5"), D("1")), (D("98"), D("3"))],
        [(D("100.5"), D("0.5")), (D("101"), D("1"))],
    )
    assert book.top(1) == ([(D("99.9"), D("5"))], [(D("100.5"), D("0.5"))])
    assert book.top(0) == ([], [])
    assert book.event_ms == 9
    # A price written differently is the same level; its first spelling stays (Kraken's checksum reads it).
    book.apply([(D("99.90"), D("6"))], [])
    assert book.as_lists(1)["bids"] == [["99.9", "6"]]


def test_exact_strings_survive_including_trailing_zeros() -> None:
    book = book_of([("61837.63000000", "0.10000000")], [("0.00000050", "1E+2")])
    assert book.as_lists(5) == {"bids": [["61837.63000000", "0.10000000"]], "asks": [["0.00000050", "100"]]}


def test_crossed_and_locked_books_are_detected() -> None:
    assert not book_of([("99", "1")], [("100", "1")]).crossed()
    assert book_of([("100", "1")], [("100", "1")]).crossed()  # locked: the matching engine would have traded
    assert book_of([("101", "1")], [("100", "1")]).crossed()
    assert not book_of([("101", "1")], []).crossed()


def test_truncate_keeps_the_best_levels() -> None:
    book = book_of([(str(p), "1") for p in range(1, 8)], [(str(p), "1") for p in range(10, 17)])
    book.bids.truncate(3)
    book.asks.truncate(2)
    assert [p for p, _ in book.bids.top(10)] == [D(7), D(6), D(5)]
    assert [p for p, _ in book.asks.top(10)] == [D(10), D(11)]
    assert set(book.bids.levels) == {D(7), D(6), D(5)}
    assert set(book.asks.levels) == {D(10), D(11)}
    book.bids.truncate(5)
    assert len(book.bids) == 3


def test_metrics_worked_out_by_hand() -> None:
    # mid 100; 10 bps band: bids >= 99.9, asks <= 100.1; 1 % band: bids >= 99, asks <= 101.
    book = book_of(
        [("99.95", "2"), ("99.9", "1"), ("99.5", "4"), ("99", "8"), ("98.9", "100")],
        [("100.05", "1"), ("100.1", "0.5"), ("100.5", "3"), ("101", "2"), ("101.01", "100")],
    )
    metrics = book.metrics()
    assert metrics is not None
    assert (metrics.best_bid, metrics.best_ask, metrics.spread, metrics.mid) == (
        D("99.95"),
        D("100.05"),
        D("0.1"),
        D(100),
    )
    assert (metrics.bid_depth_10bps, metrics.ask_depth_10bps) == (D(3), D("1.5"))
    assert (metrics.bid_depth_1pct, metrics.ask_depth_1pct) == (D(15), D("6.5"))
    assert metrics.imbalance == (D(3) - D("1.5")) / D("4.5")


def test_metrics_need_both_sides() -> None:
    assert book_of([("1", "1")], []).metrics() is None
    assert L2Book().metrics() is None


@pytest.mark.parametrize("value", ["abc", "NaN", "Infinity", "-1", 1.5, None, True])
def test_bad_decimals_are_refused(value: object) -> None:
    with pytest.raises(BookDataError):
        to_decimal(value, "qty")


def test_parse_levels_refuses_a_zero_price_and_a_short_row() -> None:
    assert parse_levels([["1.5", "0"]], "b") == [(D("1.5"), D(0))]
    with pytest.raises(BookDataError, match="price must be positive"):
        parse_levels([["0", "1"]], "b")
    with pytest.raises(BookDataError, match=r"\[price, qty\]"):
        parse_levels([["1"]], "b")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (["abc", "1"], "b price is not a decimal: 'abc'"),
        (["1", "NaN"], "b qty must be finite and not negative: 'NaN'"),
        (["Infinity", "1"], "b price must be finite and not negative: 'Infinity'"),
        (["1", "-0.5"], "b qty must be finite and not negative: '-0.5'"),
        (["0.00000000", "1"], "b: price must be positive, got '0.00000000'"),
        ([1.5, "1"], "b price must be a decimal string, got float"),
        (["1", None], "b qty must be a decimal string, got NoneType"),
        (["1", True], "b qty must be a decimal string, got bool"),
        ("1,2", "b: a level must be [price, qty], got '1,2'"),
    ],
)
def test_parse_levels_names_the_first_bad_row_whichever_path_reads_it(row: object, reason: str) -> None:
    # Two decimal strings take the inline path, anything else the checked one: a bad row fails with its reason
    # either way, after good rows too.
    with pytest.raises(BookDataError) as raised:
        parse_levels([["61000.01", "0.5"], row], "b")
    assert str(raised.value) == reason


def test_parse_levels_reads_strings_decimals_ints_tuples_and_longer_rows_alike() -> None:
    rows = [["0.10000000", "2"], (D("3.5"), 4), ["5", "0", "ignored"], ("7", "1.0")]
    levels = parse_levels(rows, "a")
    assert levels == [(D("0.1"), D(2)), (D("3.5"), D(4)), (D(5), D(0)), (D(7), D(1))]
    assert str(levels[0][0]) == "0.10000000"  # the exchange's digits kept


prices = st.integers(min_value=1, max_value=60).map(lambda n: D(n) / 4)
quantities = st.sampled_from([D(0), D("0.5"), D(1), D("2.25")])


@given(st.lists(st.tuples(st.booleans(), prices, quantities), max_size=80))
def test_the_book_matches_a_plain_dict_after_any_updates(updates: list[tuple[bool, Decimal, Decimal]]) -> None:
    book = L2Book()
    reference: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]] = ({}, {})
    for is_bid, price, qty in updates:
        book.apply([(price, qty)] if is_bid else [], [] if is_bid else [(price, qty)])
        side = reference[0] if is_bid else reference[1]
        if qty:
            side[price] = qty
        else:
            side.pop(price, None)
    bids, asks = levels_of(book)
    assert list(bids) == sorted(reference[0].items(), reverse=True)
    assert list(asks) == sorted(reference[1].items())


# Reads between writes: the kept best prices (_top and its bound) and the lazily ordered side (_order and its log)
# must agree with a plain dict whichever read comes when. Two kept prices and a log slack of 2 make every path run
# (refills, the log replayed, the log dropped for a fresh sort) within a few updates.
reads = st.sampled_from(["crossed", "best", "top1", "top3", "top_all", "depth", "truncate", "none"])


def assert_kept_best_is_exact(side: BookSide) -> None:
    """``_top`` is exactly the side's best prices in ascending order, and its bound parts them from the others:
    None only when no other price is held, else every other price is at or worse than it and ``_top`` is better."""
    held = sorted(side.levels, reverse=side.descending)  # best first
    top, bound = side._top, side._bound
    assert sorted(top, reverse=side.descending) == held[: len(top)]
    assert top == sorted(top)
    rest = held[len(top) :]
    if bound is None:
        assert not rest
    elif side.descending:
        assert all(price <= bound for price in rest)
        assert all(price > bound for price in top)
    else:
        assert all(price >= bound for price in rest)
        assert all(price < bound for price in top)


@given(st.lists(st.tuples(st.booleans(), prices, quantities, reads), max_size=120))
def test_reads_between_updates_see_the_plain_dict(steps: list[tuple[bool, Decimal, Decimal, str]]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("books.book.TOP_KEPT", 2)
        patch.setattr("books.book.LOG_SLACK", 2)
        book = L2Book()
        reference: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]] = ({}, {})
        for is_bid, price, qty, read in steps:
            book.apply([(price, qty)] if is_bid else [], [] if is_bid else [(price, qty)])
            side = reference[0] if is_bid else reference[1]
            if qty:
                side[price] = qty
            else:
                side.pop(price, None)
            bids = sorted(reference[0].items(), reverse=True)
            asks = sorted(reference[1].items())
            assert_kept_best_is_exact(book.bids)
            assert_kept_best_is_exact(book.asks)
            if read == "crossed":
                assert book.crossed() == bool(bids and asks and bids[0][0] >= asks[0][0])
            elif read == "best":
                assert (book.best_bid(), book.best_ask()) == (bids[0] if bids else None, asks[0] if asks else None)
            elif read in ("top1", "top3"):
                n = int(read[-1])
                assert book.top(n) == (bids[:n], asks[:n])
            elif read == "top_all":
                assert levels_of(book) == (bids, asks)
            elif read == "depth":
                assert book.bids.depth_to(price) == sum((q for p, q in bids if p >= price), Decimal(0))
                assert book.asks.depth_to(price) == sum((q for p, q in asks if p <= price), Decimal(0))
            elif read == "truncate":
                book.bids.truncate(3)
                book.asks.truncate(3)
                del bids[3:], asks[3:]
                reference = (dict(bids), dict(asks))
        assert levels_of(book) == (sorted(reference[0].items(), reverse=True), sorted(reference[1].items()))
