"""The market page's live order book on real servers: daphne, the Redis channel layer, a real WebSocket client and
headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright; nothing downloaded).

- A WebSocket client connected to the market page's socket receives the :class:`books.live.BookPusher` push, and the
  pushes of ``manage.py replay_books`` (a process of its own) up to the recording's last book.
- The page draws the depth chart and the spread/imbalance chart from pushed books, shows "resyncing" for a book that
  is not valid (the depth chart cleared) and "disconnected" when the socket drops, with no console error and no CSP
  violation (the page runs under its policy). Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from analytics.payloads import plain_decimal
from benchmarks.harness import free_port
from books.binance import BinanceBookSync
from books.book import L2Book
from books.live import BookPusher, book_payload
from books.replay import depth_items
from tests.books.frames import BINANCE_FILES, binance_deltas, binance_reference
from tests.conftest import ChildProcess, manage, subprocess_env, wait_for
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, start_daphne
from tests.dashboard.test_csp import LISTEN

PASSWORD = "book-test-pass-123"  # a throwaway user in the test database

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class Clock:
    """Injected time for the pusher: each push the test makes gets a slot of its own."""

    def __init__(self) -> None:
        self.s = 1_000.0

    def __call__(self) -> float:
        return self.s

    def next_slot(self) -> None:
        self.s += 1.0


def fresh_symbol() -> str:
    return f"K{uuid.uuid4().hex[:8].upper()}USDT"


def recorded_books(count: int) -> list[L2Book]:
    """The recording's book after its snapshot and each of its first ``count`` events (copies)."""
    sync = BinanceBookSync("BTCUSDT")
    books = []
    for kind, payload in itertools.islice(depth_items(BINANCE_FILES, "btcusdt"), count + 1):
        if kind == "snapshot":
            sync.on_snapshot(payload)
            continue
        sync.on_delta(payload)
        if sync.valid:
            copy = L2Book()
            copy.apply_snapshot(*sync.book.top(60), event_ms=sync.book.event_ms)
            books.append(copy)
    return books


def session_cookie(username: str) -> str:
    """A signed-in session (stored in the test database daphne reads) as a Cookie header."""
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return f"sessionid={client.cookies['sessionid'].value}"


async def receive_until(ws: Any, done: Callable[[dict[str, Any]], bool], timeout: float = 60) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not got or not done(got[-1]):
            got.append(json.loads(await ws.recv()))
    return got


def test_a_websocket_client_on_the_market_page_socket_receives_the_book_push(
    spawn: Callable[..., ChildProcess],
) -> None:
    import websockets

    get_user_model().objects.create_user(username="book-ws", password=PASSWORD)
    cookie = session_cookie("book-ws")
    port = free_port()
    start_daphne(spawn, port)
    symbol = fresh_symbol()
    book = recorded_books(5)[-1]
    pusher = BookPusher(clock=Clock())
    origin = f"http://127.0.0.1:{port}"

    async def run() -> list[dict[str, Any]]:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/market/binance/{symbol}/",
            origin=origin,  # type: ignore[arg-type]
            additional_headers={"Cookie": cookie},
        ) as ws:
            # The pusher is sync code (async_to_sync inside): off the event loop's thread.
            assert await asyncio.to_thread(pusher, [("binance", symbol, book, True)]) == 1
            return await receive_until(ws, lambda push: push.get("kind") == "book", timeout=30)

    pushes = asyncio.run(run())
    assert pushes[-1] == json.loads(json.dumps(book_payload("binance", symbol, book, True, 50)))
    assert len(pushes[-1]["bids"]) == len(pushes[-1]["asks"]) == 50


def test_replay_books_reaches_a_websocket_client_up_to_the_recordings_last_book(
    spawn: Callable[..., ChildProcess],
) -> None:
    import websockets

    get_user_model().objects.create_user(username="book-replay", password=PASSWORD)
    cookie = session_cookie("book-replay")
    port = free_port()
    start_daphne(spawn, port)
    last_event = binance_deltas()[-1]

    async def run() -> list[dict[str, Any]]:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/market/binance/BTCUSDT/",
            origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
            additional_headers={"Cookie": cookie},
            max_size=2**22,
        ) as ws:
            replay = spawn(manage("replay_books", "--speed", "0"), env=subprocess_env(), name="replay")
            try:
                return await receive_until(ws, lambda push: push.get("t") == last_event["E"], timeout=120)
            finally:
                print(replay.output()[-2000:])

    pushes = [p for p in asyncio.run(run()) if p.get("kind") == "book"]
    bids, asks, _ = binance_reference()
    assert pushes[-1]["valid"] is True
    assert (
        pushes[-1]["bids"] == [[plain_decimal(p), plain_decimal(q)] for p, q in sorted(bids.items(), reverse=True)][:50]
    )
    assert pushes[-1]["asks"] == [[plain_decimal(p), plain_decimal(q)] for p, q in sorted(asks.items())][:50]


DEPTH = "() => Chart.getChart('depth-chart').data.datasets.map((d) => d.data.map((p) => [p.x, p.y]))"
SPREAD = "() => Chart.getChart('spread-chart').data.datasets.map((d) => d.data.map((p) => [p.x, p.y]))"


def cumulative(levels: list[list[str]], bids: bool) -> list[list[float]]:
    """What the depth chart must draw for a side: cumulative quantity from the best price out, ascending price."""
    points = [[float(price), float(sum(Decimal(q) for _, q in levels[: i + 1]))] for i, (price, _) in enumerate(levels)]
    return points[::-1] if bids else points


def flat(points: list[list[float]]) -> list[float]:
    """Chart points as one list of numbers (``pytest.approx`` compares flat sequences)."""
    return [value for point in points for value in point]


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/stack.sh install)")
def test_the_market_page_draws_the_pushed_book_and_shows_resyncing_for_an_invalid_one(
    spawn: Callable[..., ChildProcess],
) -> None:
    from playwright.sync_api import sync_playwright

    get_user_model().objects.create_user(username="book-page", password=PASSWORD)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_daphne(spawn, port)
    site = f"http://127.0.0.1:{port}"
    symbol = fresh_symbol()
    clock = Clock()
    pusher = BookPusher(clock=clock)
    books = recorded_books(40)
    problems: list[str] = []

    def push(book: L2Book, valid: bool = True) -> dict[str, Any]:
        clock.next_slot()
        # Playwright's sync API runs an event loop on this thread: the pusher (async_to_sync inside) runs on another.
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(pusher, [("binance", symbol, book, valid)]).result() == 1
        return json.loads(json.dumps(book_payload("binance", symbol, book, valid, 50)))

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # Under the page's own CSP (no bypass): every violation is recorded before any page script runs.
            page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            page.add_init_script(LISTEN)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
            page.goto(f"{site}/accounts/login/?next=/market/binance/{symbol}/")
            page.fill("input[name=username]", "book-page")
            page.fill("input[name=password]", PASSWORD)
            page.click("form[action='/accounts/login/'] button[type=submit]")
            page.wait_for_url(f"{site}/market/binance/{symbol}/")
            page.wait_for_selector("body[data-loaded=true]")
            page.wait_for_selector("#conn-status[data-state=live]")
            # Before any push: waiting, nothing drawn.
            assert page.get_attribute("#book-panel", "data-state") == "waiting"
            assert page.is_visible(".book-note[data-when=waiting]")
            assert page.evaluate(DEPTH) == [[], []]

            # A pushed book: both sides' cumulative depth, the numbers above the chart, the spread series.
            for book in books[:-1]:
                push(book)
            last = push(books[-1])
            wait_for(lambda: len(page.evaluate(SPREAD)[0]) == len(books), timeout=30, what="every push drawn")
            wait_for(lambda: page.get_attribute("#book-panel", "data-state") == "live", what="the book live")
            bids_drawn, asks_drawn = page.evaluate(DEPTH)
            assert flat(bids_drawn) == pytest.approx(flat(cumulative(last["bids"], bids=True)))
            assert flat(asks_drawn) == pytest.approx(flat(cumulative(last["asks"], bids=False)))
            assert len(bids_drawn) == len(asks_drawn) == 50
            metrics = last["metrics"]
            assert page.inner_text("#book-bid") == f"{float(metrics['best_bid']):,.2f}"
            assert page.inner_text("#book-ask") == f"{float(metrics['best_ask']):,.2f}"
            assert page.inner_text("#book-imbalance") == f"{float(metrics['imbalance']):+.3f}"
            spread, imbalance = page.evaluate(SPREAD)
            assert [x for x, _ in spread] == [b.event_ms for b in books]
            assert spread[-1][1] == pytest.approx(float(metrics["spread"]))
            assert imbalance[-1][1] == pytest.approx(float(metrics["imbalance"]))
            assert all(page.is_hidden(f".book-note[data-when={state}]") for state in ("waiting", "resyncing"))
            assert page.inner_text("#book-status") == ""
            page.wait_for_timeout(300)  # let the frame paint before the screenshot
            page.locator("#book-panel").screenshot(path=str(SCREENSHOTS / "book-live.png"))

            # The book breaks: resyncing, the depth chart cleared, no number left; the series gets a gap.
            stale = L2Book()
            stale.apply_snapshot(*books[-1].top(60), event_ms=(books[-1].event_ms or 0) + 100)
            push(stale, valid=False)  # the consumer's book still holds levels: none may show
            wait_for(lambda: page.get_attribute("#book-panel", "data-state") == "resyncing", what="resyncing")
            assert page.evaluate(DEPTH) == [[], []]
            assert page.is_visible(".book-note[data-when=resyncing]")
            assert page.inner_text(".book-note[data-when=resyncing] strong") == "Resyncing"
            assert page.inner_text("#book-status").lower() == "resyncing"
            assert page.inner_text("#book-bid") == page.inner_text("#book-spread") == "—"
            assert page.evaluate(SPREAD)[0][-1] == [(books[-1].event_ms or 0) + 100, None]
            page.wait_for_timeout(300)
            page.locator("#book-panel").screenshot(path=str(SCREENSHOTS / "book-resyncing.png"))

            # Valid again: drawn again.
            again = push(books[0])
            wait_for(lambda: page.get_attribute("#book-panel", "data-state") == "live", what="live again")
            assert flat(page.evaluate(DEPTH)[1]) == pytest.approx(flat(cumulative(again["asks"], bids=False)))

            # The socket drops: the book may move meanwhile, so it is cleared and the panel says so.
            server.stop()
            wait_for(lambda: page.get_attribute("#book-panel", "data-state") == "offline", what="offline")
            assert page.evaluate(DEPTH) == [[], []]
            assert page.is_visible(".book-note[data-when=offline]")

            problems += [str(v) for v in page.evaluate("() => window.__csp")]
            # The socket's own reconnect attempts are the only errors a stopped server may log.
            problems = [p for p in problems if "WebSocket" not in p and "ERR_CONNECTION_REFUSED" not in p]
            assert not problems, problems
        finally:
            browser.close()
