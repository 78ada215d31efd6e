"""cryptofeed's side of ``make bench-books``: its Binance L2 book, pointed at the simulator, one round.

Runs in its own virtualenv (``.venv-peer``, from ``requirements/peer.txt``) and imports nothing of the project.
cryptofeed's Binance feed subscribes ``<symbol>@depth@100ms``; on the first event of a symbol it awaits a REST
snapshot (``/api/v3/depth?limit=1000``, its default depth), builds an ``OrderBook`` of the ``order_book`` C library
from it, then checks each event's ``U``/``u`` and sets or deletes each level in that book (``Decimal`` prices and
quantities), and hands the book to the ``L2_BOOK`` callbacks. The callback here only counts (no backend), as ours
hands its messages to a sink.

``round`` mode measures from the first depth frame handed to the feed (``message_handler``) to the callback of the
event whose ``u`` is ``--last-id`` (the recording's last), in wall time and in this process's CPU time
(``time.process_time``, every thread), then writes the figures and the final book (every level, best first) to
``--out`` and exits. ``memory`` mode builds ``--books`` books of ``--levels`` levels a side and writes the bytes
each took (the same procedure as ours, ``benchmarks/books_ours.py``).

    .venv-peer/bin/python benchmarks/books_cryptofeed.py round --ws ws://127.0.0.1:PORT --rest http://127.0.0.1:PORT \
        --last-id N --out FILE
    .venv-peer/bin/python benchmarks/books_cryptofeed.py memory --out FILE
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time
import tracemalloc
from decimal import Decimal
from typing import Any

from cryptofeed import FeedHandler
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint, WSAsyncConn
from cryptofeed.defines import L2_BOOK
from cryptofeed.exchanges import Binance
from cryptofeed.types import OrderBook


def allow_plain_websocket() -> None:
    """cryptofeed refuses any address but ``wss://``; the check is passed and the plain ``ws://`` put back (as in
    ``benchmarks/peer_cryptofeed.py``)."""
    original = WSAsyncConn.__init__

    def init(self: WSAsyncConn, address: str, *args: object, **kwargs: object) -> None:
        plain = address.startswith("ws://")
        original(self, "wss://" + address[len("ws://") :] if plain else address, *args, **kwargs)
        self.address = address

    WSAsyncConn.__init__ = init


class Round:
    """The measured window and the counts of one round."""

    def __init__(self, last_id: int, out: str) -> None:
        self.last_id = last_id
        self.out = out
        self.wall0 = self.cpu0 = 0.0
        self.frames = self.events = self.snapshots = 0
        self.snapshot_ids: list[int] = []

    def first_frame(self) -> None:
        """Open the window (called once, before the first frame is handled)."""
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    async def on_book(self, book: Any, receipt: float) -> None:
        """cryptofeed's ``L2_BOOK`` callback: count; at the last event close the window, write, exit."""
        if book.delta is None:
            self.snapshots += 1
            self.snapshot_ids.append(book.sequence_number)  # the snapshot's lastUpdateId: the sync point
        else:
            self.events += 1
        if book.sequence_number == self.last_id and book.delta is not None:
            wall, cpu = time.perf_counter() - self.wall0, time.process_time() - self.cpu0
            bids = book.book.bids.to_list()
            asks = book.book.asks.to_list()
            result = {
                "side": "cryptofeed",
                "wall_s": wall,
                "cpu_s": cpu,
                "frames": self.frames,
                "events_applied": self.events,
                "snapshots": self.snapshots,
                "snapshot_ids": self.snapshot_ids,
                "snapshot_limit": 1000,  # cryptofeed's default depth (max_depth None)
                "last_update_id": book.sequence_number,
                "bids": [[str(p), str(q)] for p, q in bids],
                "asks": [[str(p), str(q)] for p, q in asks],
            }
            with open(self.out, "w") as handle:
                json.dump(result, handle)
            os._exit(0)


def simulated_binance(ws_url: str, rest_url: str, measure: Round) -> type[Binance]:
    """cryptofeed's Binance feed with its endpoints moved to the simulator; the first frame opens the window."""

    class SimulatedBinance(Binance):
        websocket_endpoints = [WebsocketEndpoint(ws_url)]
        rest_endpoints = [
            RestEndpoint(
                rest_url,
                routes=Routes(
                    "/api/v3/exchangeInfo",
                    l2book="/api/v3/depth?symbol={}&limit={}",
                    authentication="/api/v3/userDataStream",
                ),
            )
        ]

        async def message_handler(self, msg: str, conn: Any, timestamp: float) -> None:
            if not measure.frames:
                measure.first_frame()
            measure.frames += 1
            await super().message_handler(msg, conn, timestamp)

    return SimulatedBinance


def rss_bytes() -> int:
    """Resident set size of this process (``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def levels(count: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``count`` bids and asks as Binance spells them (8 decimals); the same generator as ours."""
    bids = [(f"{60000 - i * 0.01:.8f}", f"{0.001 * (i % 97 + 1):.8f}") for i in range(count)]
    asks = [(f"{60000.01 + i * 0.01:.8f}", f"{0.001 * (i % 89 + 1):.8f}") for i in range(count)]
    return bids, asks


def memory(books: int, count: int, out: str) -> None:
    """Build ``books`` books as cryptofeed's ``_snapshot`` does; write traced and resident bytes per book."""
    bids, asks = levels(count)
    kept = []
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    for _ in range(books):
        kept.append(
            OrderBook(
                "BINANCE",
                "BTC-USDT",
                bids={Decimal(p): Decimal(q) for p, q in bids},
                asks={Decimal(p): Decimal(q) for p, q in asks},
            )
        )
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced0
    tracemalloc.stop()
    rss = rss_bytes() - rss0
    if any(len(book.book.bids) != count or len(book.book.asks) != count for book in kept):
        raise SystemExit("a memory book lost levels")
    with open(out, "w") as handle:
        json.dump({"side": "cryptofeed", "books": books, "traced_bytes": traced, "rss_bytes": rss}, handle)


def main() -> None:
    """One round of cryptofeed's Binance book against the simulator, or the memory measurement."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("round")
    one.add_argument("--ws", required=True)
    one.add_argument("--rest", required=True)
    one.add_argument("--symbol", default="BTC-USDT", help="cryptofeed's normalised symbol")
    one.add_argument("--last-id", type=int, required=True, help="u of the recording's last event")
    one.add_argument("--out", required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("--books", type=int, default=10)
    mem.add_argument("--levels", type=int, default=5000)
    mem.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.mode == "memory":
        memory(args.books, args.levels, args.out)
        return
    measure = Round(args.last_id, args.out)
    feed = simulated_binance(args.ws, args.rest, measure)(
        symbols=[args.symbol], channels=[L2_BOOK], callbacks={L2_BOOK: measure.on_book}
    )
    allow_plain_websocket()
    handler = FeedHandler()
    # FeedHandler() installs uvloop's policy and run() calls asyncio.get_event_loop(), which uvloop >= 0.22 refuses
    # without a loop set (see benchmarks/peer_cryptofeed.py).
    asyncio.set_event_loop(asyncio.new_event_loop())
    handler.add_feed(feed)
    handler.run()


if __name__ == "__main__":
    main()
