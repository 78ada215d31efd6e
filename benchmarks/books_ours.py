"""This project's side of ``make bench-books``: ingest's Binance books path against the simulator, one round.

What runs is what ``manage.py ingest --channels books`` runs for a depth connection, less Kafka: the ingest's
``WsClient`` (websocket-client with its read-ahead) on ``<symbol>@depth@100ms``, and
:class:`books.stream.BinanceBookFeed` as its frame handler: ``orjson`` decoding, the event check, the
:class:`books.binance.BinanceBookSync` machine (buffering, the REST snapshot from ``/api/v3/depth`` through the Binance
REST client, ``U``/``u`` chaining, ``Decimal`` parsing, :class:`books.book.L2Book` updates, the crossed check) and the
delta and snapshot messages serialised for ``market.books``. Those messages go to a sink that counts them instead of
the Kafka producer, as cryptofeed's side hands its books to a callback that only counts.

``round`` mode measures from the first depth frame to the event whose ``u`` is ``--last-id`` (wall time and this
process's CPU time, every thread), writes the figures and the final book to ``--out`` and returns. ``memory`` mode
builds ``--books`` books of ``--levels`` levels a side as a snapshot builds them (``parse_levels`` then
``apply_snapshot``) and writes the bytes each took, measured as ``benchmarks/books_cryptofeed.py`` measures its own.

    python -m benchmarks.books_ours round --ws ws://127.0.0.1:PORT --rest http://127.0.0.1:PORT --last-id N --out F
    python -m benchmarks.books_ours memory --out FILE
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import threading
import time
import tracemalloc
from typing import Any, cast

from benchmarks.harness import setup_django


class SinkProducer:
    """Stands in for :class:`ingest.producer.TradeProducer`: counts what the feed would publish."""

    def __init__(self) -> None:
        """Nothing published yet."""
        self.messages = 0
        self.bytes = 0
        self.dead_letters = 0

    def publish_books(self, key: bytes, values: list[bytes], received_at: int) -> int:
        """Count the messages (the real producer appends them to its batch)."""
        self.messages += len(values)
        self.bytes += sum(map(len, values))
        return len(values)

    def dead_letter(self, letter: object) -> None:
        """Count a refused frame."""
        self.dead_letters += 1


def levels(count: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``count`` bids and asks as Binance spells them (8 decimals); the same generator as cryptofeed's side."""
    bids = [(f"{60000 - i * 0.01:.8f}", f"{0.001 * (i % 97 + 1):.8f}") for i in range(count)]
    asks = [(f"{60000.01 + i * 0.01:.8f}", f"{0.001 * (i % 89 + 1):.8f}") for i in range(count)]
    return bids, asks


def rss_bytes() -> int:
    """Resident set size of this process (``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(books: int, count: int, out: str) -> None:
    """Build ``books`` books as a snapshot builds them; write traced and resident bytes per book."""
    from books.book import L2Book, parse_levels

    bids, asks = levels(count)
    kept = []
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    for _ in range(books):
        book = L2Book()
        book.apply_snapshot(parse_levels(bids, "bids"), parse_levels(asks, "asks"))
        kept.append(book)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced0
    tracemalloc.stop()
    rss = rss_bytes() - rss0
    if any(len(book.bids) != count or len(book.asks) != count for book in kept):
        raise SystemExit("a memory book lost levels")
    with open(out, "w") as handle:
        json.dump({"side": "ours", "books": books, "traced_bytes": traced, "rss_bytes": rss}, handle)


def one_round(ws: str, rest: str, last_id: int, out: str, symbol: str = "BTCUSDT") -> None:
    """Run the depth connection until the event ``last_id`` is applied; write the figures and the book."""
    setup_django()
    from django.conf import settings

    from books.stream import BinanceBookFeed, depth_plans, rest_fetch
    from ingest.client import WsClient
    from ingest.metrics import IngestMetrics
    from ingest.producer import TradeProducer

    sink = SinkProducer()
    snapshot_ids: list[Any] = []
    fetch_rest = rest_fetch(rest)

    def fetch(symbol: str, limit: int) -> Any:
        body = fetch_rest(symbol, limit)
        if isinstance(body, dict):  # the sync point, for the reference book (not on the per-event path)
            snapshot_ids.append(body.get("lastUpdateId"))
        return body

    metrics = IngestMetrics("binance")
    feed = BinanceBookFeed(
        [symbol],
        cast(TradeProducer, sink),
        metrics,
        fetch,
        snapshot_limit=settings.BOOK_SNAPSHOT_LIMIT,
        snapshot_every_s=settings.BOOK_SNAPSHOT_EVERY_S,
    )
    sync = feed.syncs[symbol]
    stop = threading.Event()
    window: dict[str, Any] = {}

    def on_frame(raw: bytes, received_at: int) -> bool:
        if not window:
            window["wall0"], window["cpu0"] = time.perf_counter(), time.process_time()
        shutdown = feed(raw, received_at)
        if sync.last_update_id == last_id and sync.valid:
            window["wall_s"] = time.perf_counter() - window["wall0"]
            window["cpu_s"] = time.process_time() - window["cpu0"]
            stop.set()
        return shutdown

    (plan,) = depth_plans(ws, [symbol.lower()])
    WsClient(plan, on_frame, stop).run()
    book = sync.book.as_lists(max(len(sync.book.bids), len(sync.book.asks)))
    result = {
        "side": "ours",
        "wall_s": window["wall_s"],
        "cpu_s": window["cpu_s"],
        "frames": metrics.messages_received,
        "events_applied": metrics.book_deltas,
        "snapshots": sync.syncs,
        "snapshot_ids": snapshot_ids,
        "snapshot_limit": settings.BOOK_SNAPSHOT_LIMIT,
        "resyncs": sync.resyncs,
        "messages_published": sink.messages,
        "dead_letters": sink.dead_letters,
        "last_update_id": sync.last_update_id,
        "bids": book["bids"],
        "asks": book["asks"],
    }
    with open(out, "w") as handle:
        json.dump(result, handle)


def main(argv: list[str] | None = None) -> None:
    """One round of ours against the simulator, or the memory measurement."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("round")
    one.add_argument("--ws", required=True)
    one.add_argument("--rest", required=True)
    one.add_argument("--last-id", type=int, required=True, help="u of the recording's last event")
    one.add_argument("--out", required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("--books", type=int, default=10)
    mem.add_argument("--levels", type=int, default=5000)
    mem.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.mode == "memory":
        memory(args.books, args.levels, args.out)
    else:
        one_round(args.ws, args.rest, args.last_id, args.out)


if __name__ == "__main__":
    main()
