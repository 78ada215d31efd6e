"""``books/replay.py`` and ``manage.py replay_books``: the bundled Binance recording's books, rebuilt by the sync
machine and pushed through the real Redis channel layer, each push equal to the book rebuilt independently
(``tests/books/frames.py``) at that push's event."""

from __future__ import annotations

import gzip
import itertools
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from analytics.groups import market_group
from analytics.payloads import plain_decimal
from books.live import BookPusher
from books.management.commands.replay_books import RECORDINGS
from books.replay import depth_items, replay
from tests.analytics.test_tasks import Listener
from tests.books.frames import BINANCE_FILES, RefSide, apply_rows, binance_deltas, binance_reference, binance_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

LEVELS = 50


class FakeTime:
    """An injected clock and the sleep that advances it (whole microseconds)."""

    def __init__(self) -> None:
        self.us = 5_000_000_000

    def clock(self) -> float:
        return self.us / 1e6

    def sleep(self, seconds: float) -> None:
        self.us += max(1, round(seconds * 1e6))


class RecordingPusher(BookPusher):
    """A pusher that notes the clock time of each push it sends (the throttle under test is the real one)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent_at: list[float] = []

    def flush(self, now: float | None = None) -> int:
        sent = super().flush(now)
        self.sent_at += [self._clock()] * sent
        return sent


@pytest.fixture
def listener() -> Iterator[Callable[[str], Listener]]:
    made: list[Listener] = []

    def _listen(symbol: str) -> Listener:
        made.append(Listener(market_group("binance", symbol)))
        return made[-1]

    yield _listen
    for one in made:
        one.close()


def received(listener: Listener) -> list[dict[str, Any]]:
    got = []
    while (payload := listener.receive(timeout=1.0)) is not None:
        got.append(payload)
    return got


def top(bids: RefSide, asks: RefSide) -> dict[str, list[list[str]]]:
    """The reference book's best ``LEVELS`` a side as a push shows them."""
    return {
        "bids": [[plain_decimal(p), plain_decimal(q)] for p, q in sorted(bids.items(), reverse=True)[:LEVELS]],
        "asks": [[plain_decimal(p), plain_decimal(q)] for p, q in sorted(asks.items())[:LEVELS]],
    }


def test_the_recording_replayed_at_its_pace_pushes_each_book_as_rebuilt_independently(listener) -> None:
    symbol = f"R{uuid.uuid4().hex[:8].upper()}USDT"  # the same frames under a symbol nobody else listens to
    listen = listener(symbol)
    time = FakeTime()
    pusher = RecordingPusher(max_hz=5, levels=LEVELS, clock=time.clock)
    # The snapshot and the first 1,000 events (about 100 recorded seconds; the channel holds 1,000 messages).
    items = list(itertools.islice(depth_items(BINANCE_FILES, "btcusdt"), 1_001))
    started = time.clock()
    stats = replay(items, pusher, symbol, speed=1, clock=time.clock, sleep=time.sleep)
    pushes = received(listen)

    assert (stats.events, stats.dropped, stats.resyncs, stats.valid) == (1_000, 0, 0, True)
    assert stats.pushes == len(pushes) == len(pusher.sent_at) > 400
    # At the recorded pace: 1,000 events of 100 ms, about 100 s of (injected) time, at most 5 pushes a second.
    ms = [round(t * 1000) for t in pusher.sent_at]
    assert all(sum(1 for u in ms if t <= u < t + 1000) <= 5 for t in ms)
    assert 95 < time.clock() - started < 105

    # Every push equals the reference book at its event, rebuilt with plain dicts from the same frames.
    by_time = {push["t"]: push for push in pushes}
    assert len(by_time) == len(pushes)
    snapshot = binance_snapshot()
    bids: RefSide = {}
    asks: RefSide = {}
    apply_rows(bids, snapshot["bids"])
    apply_rows(asks, snapshot["asks"])
    checked = 0
    last_event = items[-1][1]
    for event in binance_deltas()[:1_000]:
        if event["u"] <= snapshot["lastUpdateId"]:
            continue
        apply_rows(bids, event["b"])
        apply_rows(asks, event["a"])
        push = by_time.get(event["E"])
        if push is not None:
            assert {"bids": push["bids"], "asks": push["asks"]} == top(bids, asks), event["u"]
            best_bid, best_ask = max(bids), min(asks)
            assert push["metrics"]["spread"] == plain_decimal(best_ask - best_bid)
            assert push["metrics"]["mid"] == plain_decimal((best_bid + best_ask) / 2)
            assert push["valid"] is True
            checked += 1
    assert checked == len(pushes)
    # The last state was delivered: the final push is the book after the last event.
    assert pushes[-1]["t"] == last_event["E"]


def test_a_dropped_event_breaks_the_book_and_the_last_push_shows_it_resyncing(listener) -> None:
    symbol = f"R{uuid.uuid4().hex[:8].upper()}USDT"
    listen = listener(symbol)
    time = FakeTime()
    pusher = BookPusher(max_hz=5, levels=LEVELS, clock=time.clock)
    items = list(itertools.islice(depth_items(BINANCE_FILES, "btcusdt"), 301))
    stats = replay(items, pusher, symbol, speed=0, drop_event=200, clock=time.clock, sleep=time.sleep)
    pushes = received(listen)
    assert (stats.events, stats.dropped, stats.resyncs, stats.valid) == (300, 1, 1, False)
    # As fast as it goes: the first valid book at once, then the broken one once its slot freed.
    assert [p["valid"] for p in pushes] == [True, False]
    assert (pushes[-1]["bids"], pushes[-1]["asks"], pushes[-1]["metrics"]) == ([], [], None)


def test_the_command_replays_the_bundled_recording_and_ends_on_its_last_book(listener) -> None:
    listen = listener("BTCUSDT")
    out = StringIO()
    call_command("replay_books", "--speed", "0", "--passes", "1", stdout=out)
    pushes = received(listen)
    assert out.getvalue().startswith("replayed 6495 events of binance BTCUSDT (0 dropped): ")
    assert "0 resyncs, book valid at the end" in out.getvalue()
    # Other tests may push BTCUSDT too: this command's pushes carry the recording's event times.
    last = [p for p in pushes if p.get("t") == binance_deltas()[-1]["E"]]
    assert len(last) == 1
    bids, asks, _ = binance_reference()
    assert {"bids": last[0]["bids"], "asks": last[0]["asks"]} == top(bids, asks)
    assert Decimal(last[0]["metrics"]["best_bid"]) == max(bids)


def test_the_default_recordings_are_the_bundled_ones() -> None:
    assert [p.resolve() for p in RECORDINGS] == [p.resolve() for p in BINANCE_FILES]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--file", "/nonexistent/depth.gz"], "--file: no such recording"),
        (["--speed", "-1"], "--speed"),
        (["--passes", "-1"], "--passes"),
        (["--drop-event", "-3"], "--drop-event"),
        (["--symbol", "ethusdt", "--speed", "0"], "no ethusdt@depth event"),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("replay_books", *args)


def test_a_plain_file_recording_replays_too(tmp_path: Path, listener) -> None:
    """A recorder file that is not compressed (the layout ``<receive ns> <frame>``) is read as well."""
    with gzip.open(BINANCE_FILES[0], "rb") as handle:
        lines = list(itertools.islice(handle, 60))
    plain = tmp_path / "depth.txt"
    plain.write_bytes(b"".join(lines))
    listen = listener("BTCUSDT")
    out = StringIO()
    call_command("replay_books", "--file", str(plain), "--speed", "0", "--passes", "2", stdout=out)
    # Two passes, each a fresh sync of the same frames.
    assert out.getvalue().count("0 resyncs, book valid at the end") == 2
    assert any(p.get("valid") for p in received(listen))
