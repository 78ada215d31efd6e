"""The live book push (``books/live.py``) through the real Redis channel layer: the throttle with an injected clock
(at most ``BOOK_PUSH_MAX_HZ`` a second per market, the last state always delivered, markets independent), the
payload, a channel layer that is down, and the settings failing closed."""

from __future__ import annotations

import copy
import subprocess
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from analytics.groups import market_group
from books.book import L2Book
from books.live import BookPusher, book_payload
from tests.analytics.test_tasks import Listener
from tests.conftest import ROOT, manage, subprocess_env

pytestmark = pytest.mark.integration

D = Decimal


class Clock:
    """Injected monotonic time: whole milliseconds, so the throttle's slots fall exactly where the test says."""

    def __init__(self, ms: int = 1_000_000) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    """``listen(*groups)``: a channel on the real Redis layer subscribed to the groups, closed at teardown."""
    made: list[Listener] = []

    def _listen(*groups: str) -> Listener:
        made.append(Listener(*groups))
        return made[-1]

    yield _listen
    for listener in made:
        listener.close()


def fresh_symbol() -> str:
    """A symbol no other test listens to."""
    return f"B{uuid.uuid4().hex[:10].upper()}USDT"


def small_book(step: int = 0) -> L2Book:
    """Two bids and two asks; ``step`` changes the best bid's quantity (each update a distinct state)."""
    book = L2Book()
    book.apply_snapshot(
        [(D("100.50"), D("1") + step), (D("100.00"), D("3"))],
        [(D("101.50"), D("2")), (D("102.00"), D("0.5"))],
        event_ms=1_723_161_255_000 + step,
    )
    return book


def drain(listener: Listener) -> list[dict[str, Any]]:
    """Every push already delivered to the listener (a short wait for the last)."""
    got = []
    while (payload := listener.receive(timeout=1.0)) is not None:
        got.append(payload)
    return got


def at_most_per_second(times_ms: list[int], limit: int) -> bool:
    """No window [t, t + 1 s) starting at a push holds more than ``limit`` pushes."""
    return all(sum(1 for u in times_ms if t <= u < t + 1000) <= limit for t in times_ms)


# --------------------------------------------------------------------------------------------- the payload
def test_the_payload_carries_the_best_levels_as_plain_decimals_the_time_the_flag_and_the_metrics() -> None:
    book = small_book()
    book.apply([(D("99.00000000"), D("7.10000000"))], [], event_ms=1_723_161_255_999)
    payload = book_payload("binance", "BTCUSDT", book, True, levels=2)
    assert payload == {
        "kind": "book",
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "t": 1_723_161_255_999,
        "valid": True,
        # The two best a side, best first, as the platform's plain decimals (no trailing zeros).
        "bids": [["100.5", "1"], ["100", "3"]],
        "asks": [["101.5", "2"], ["102", "0.5"]],
        "metrics": {
            "best_bid": "100.5",
            "best_ask": "101.5",
            "spread": "1",
            "mid": "101",
            # Within 10 bps of the mid 101: bids >= 100.899 and asks <= 101.101: none.
            "bid_depth_10bps": "0",
            "ask_depth_10bps": "0",
            # Within 1 %: bids >= 99.99 (100.5 and 100: 1 + 3) and asks <= 102.01 (2 + 0.5); 99 is outside.
            "bid_depth_1pct": "4",
            "ask_depth_1pct": "2.5",
            "imbalance": "0",
        },
    }


def test_a_book_that_is_not_valid_shows_no_level_and_no_metrics_even_if_it_still_holds_some() -> None:
    payload = book_payload("binance", "BTCUSDT", small_book(), False, levels=50)
    assert payload == {
        "kind": "book",
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "t": 1_723_161_255_000,
        "valid": False,
        "bids": [],
        "asks": [],
        "metrics": None,
    }


def test_a_valid_book_with_an_empty_side_has_levels_but_no_metrics() -> None:
    book = L2Book()
    book.apply_snapshot([(D("100"), D("1"))], [])
    payload = book_payload("binance", "BTCUSDT", book, True, levels=50)
    assert (payload["bids"], payload["asks"], payload["metrics"], payload["t"]) == ([["100", "1"]], [], None, None)


# --------------------------------------------------------------------------------------------- the throttle
@pytest.mark.django_db
def test_a_burst_pushes_at_most_five_a_second_and_the_last_state_always_arrives(listen) -> None:
    symbol = fresh_symbol()
    listener = listen(market_group("binance", symbol))
    clock = Clock()
    pusher = BookPusher(max_hz=5, levels=50, clock=clock)
    book = small_book()
    pushed_at: list[int] = []
    # 300 updates 7 ms apart (2.1 s): the consumer hands over the same book object, changed in place.
    for step in range(300):
        clock.ms += 7
        book.apply([(D("100.50"), D(step + 1))], [], event_ms=1_723_161_256_000 + step)
        if pusher([("binance", symbol, book, True)]):
            pushed_at.append(clock.ms)
    # The market goes quiet: the consumer's polls flush the held state once its slot frees.
    held = pusher.wait_s()
    assert held is not None
    assert pusher.pending == 1
    assert pusher.flush() == 0  # the slot is not free yet
    clock.ms += round(held * 1000)
    assert pusher.flush() == 1
    pushed_at.append(clock.ms)
    assert (pusher.pending, pusher.wait_s()) == (0, None)

    received = drain(listener)
    assert len(received) == len(pushed_at) == pusher.pushed
    assert at_most_per_second(pushed_at, 5)
    # Throttled, not starved: a push at the first update past each 200 ms slot (every 203 ms), and the trailing one.
    assert len(pushed_at) == 12
    # Each push showed the book as it was then, in order, and the last one its final state.
    best_qty = [int(p["bids"][0][1]) for p in received]
    assert best_qty == sorted(best_qty)
    assert received[-1]["bids"][0] == ["100.5", "300"]
    assert received[-1]["t"] == 1_723_161_256_299
    assert received[-1] == book_payload("binance", symbol, book, True, 50)


@pytest.mark.django_db
def test_markets_are_throttled_independently(listen) -> None:
    busy, quiet = fresh_symbol(), fresh_symbol()
    listener_busy = listen(market_group("binance", busy))
    listener_quiet = listen(market_group("binance", quiet))
    clock = Clock()
    pusher = BookPusher(max_hz=5, levels=50, clock=clock)
    busy_book, quiet_book = small_book(), small_book()
    assert pusher([("binance", busy, busy_book, True)]) == 1
    # The busy market is throttled now; the quiet one's first update goes at once, in the same batch call.
    clock.ms += 50
    busy_book.apply([(D("100.50"), D("42"))], [])
    assert pusher([("binance", busy, busy_book, True), ("binance", quiet, quiet_book, True)]) == 1
    assert pusher.pending == 1
    assert [p["symbol"] for p in drain(listener_quiet)] == [quiet]
    # The quiet market's next update, 100 ms after its push, waits for its own slot, not the busy one's.
    clock.ms += 100
    quiet_book.apply([], [(D("101.50"), D("9"))])
    assert pusher([("binance", quiet, quiet_book, True)]) == 0
    clock.ms += 50  # 200 ms after the busy market's push: its slot frees, the quiet one's not yet
    assert pusher.flush() == 1
    clock.ms += 100  # 200 ms after the quiet market's push
    assert pusher.flush() == 1
    assert pusher.pending == 0
    busy_pushes, quiet_pushes = drain(listener_busy), drain(listener_quiet)
    assert [p["bids"][0] for p in busy_pushes] == [["100.5", "1"], ["100.5", "42"]]
    assert [p["asks"][0] for p in quiet_pushes] == [["101.5", "9"]]


@pytest.mark.django_db
def test_a_book_that_breaks_is_pushed_as_not_valid_and_then_valid_again(listen) -> None:
    symbol = fresh_symbol()
    listener = listen(market_group("binance", symbol))
    clock = Clock()
    pusher = BookPusher(max_hz=5, levels=50, clock=clock)
    book = small_book()
    pusher([("binance", symbol, book, True)])
    clock.ms += 200
    book.clear()  # a break clears the book
    pusher([("binance", symbol, book, False)])
    clock.ms += 100
    book.apply_snapshot([(D("100"), D("5"))], [(D("101"), D("6"))], event_ms=1_723_161_300_000)
    pusher([("binance", symbol, book, True)])
    clock.ms += 100
    pusher.flush()
    got = drain(listener)
    assert [(p["valid"], p["bids"], p["metrics"] is None) for p in got] == [
        (True, [["100.5", "1"], ["100", "3"]], False),
        (False, [], True),
        (True, [["100", "5"]], False),
    ]


@pytest.mark.django_db
def test_a_channel_layer_that_is_down_loses_no_latest_state(settings, listen) -> None:
    symbol = fresh_symbol()
    up = copy.deepcopy(settings.CHANNEL_LAYERS)
    down = copy.deepcopy(up)
    down["default"]["CONFIG"]["hosts"] = [{"address": "redis://127.0.0.1:1/0", "socket_timeout": 2}]
    clock = Clock()
    pusher = BookPusher(max_hz=5, levels=50, clock=clock)
    book = small_book()
    settings.CHANNEL_LAYERS = down  # channels drops its cached layers on the setting's change
    assert pusher([("binance", symbol, book, True)]) == 0
    assert (pusher.pending, pusher.failed, pusher.pushed) == (1, 1, 0)
    # The failed send took the slot: the state is held for the next one, not dropped.
    assert pusher.wait_s() == pytest.approx(0.2)
    settings.CHANNEL_LAYERS = up
    listener = listen(market_group("binance", symbol))
    clock.ms += 200
    book.apply([(D("100.50"), D("8"))], [])  # changed meanwhile: the newest state goes
    assert pusher.flush() == 1
    assert (pusher.pending, pusher.pushed) == (0, 1)
    assert [p["bids"][0] for p in drain(listener)] == [["100.5", "8"]]


def test_wait_s_says_when_the_first_held_market_is_due() -> None:
    sent: list[Any] = []
    clock = Clock()

    def send(messages: Any) -> int:
        sent.extend(messages)
        return len(messages)

    pusher = BookPusher(max_hz=4, levels=10, clock=clock, send=send)
    assert pusher.wait_s() is None
    book = small_book()
    pusher([("binance", "AUSDT", book, True)])
    clock.ms += 100
    pusher([("binance", "AUSDT", book, True)])
    assert pusher.wait_s() == 0.15
    pusher([("binance", "BUSDT", book, True)])  # pushed at once: nothing of B is held
    assert pusher.wait_s() == 0.15
    clock.ms += 150
    assert pusher.wait_s() == 0.0
    assert pusher.flush() == 1
    assert [group for group, _ in sent] == [
        market_group("binance", "AUSDT"),
        market_group("binance", "BUSDT"),
        market_group("binance", "AUSDT"),
    ]


@pytest.mark.parametrize(("kwargs", "message"), [({"max_hz": 0}, "max_hz"), ({"levels": 0}, "levels")])
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BookPusher(**kwargs)


def test_defaults_come_from_the_settings(settings) -> None:
    settings.BOOK_PUSH_MAX_HZ = 2.5
    settings.BOOK_PUSH_LEVELS = 7
    pusher = BookPusher()
    assert (pusher.interval, pusher.levels) == (0.4, 7)


# --------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BOOK_PUSH_MAX_HZ", "6"),
        ("BOOK_PUSH_MAX_HZ", "0"),
        ("BOOK_PUSH_MAX_HZ", "fast"),
        ("BOOK_PUSH_LEVELS", "0"),
        ("BOOK_PUSH_LEVELS", "501"),
        ("BOOK_PUSH_LEVELS", "fifty"),
    ],
)
def test_a_bad_setting_stops_commands_naming_it(name: str, value: str) -> None:
    result = subprocess.run(
        manage("check"),
        cwd=ROOT,
        env={**subprocess_env(), "DJANGO_DEBUG": "true", name: value},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert name in result.stderr
