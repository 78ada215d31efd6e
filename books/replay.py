"""Replay a Binance depth recording's books into the live push, paced by their event times (``manage.py
replay_books``): the market page's depth chart without ingest, Kafka or the book consumer, for demos and screenshots.

The recordings are the recorder's ``<receive ns> <frame>`` lines (``data/binance-spot-ws/*.gz``): the
``<symbol>@depth@100ms`` events and the REST snapshot line ``{"lastUpdateId", ...}`` are fed, in recorded order, to a
:class:`~books.binance.BinanceBookSync`, exactly as ingest feeds it. After each event that leaves the book valid (or
turns it invalid), the book goes to the :class:`~books.live.BookPusher` as the book consumer hands it over, so the
pushes are throttled and flushed the same way.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from books.binance import BinanceBookSync
from books.live import BookPusher

#: the shortest wait of the replay's pacing loop
MIN_STEP_S = 0.001


@dataclass
class ReplayStats:
    """What one pass replayed."""

    events: int = 0
    dropped: int = 0
    updates: int = 0
    pushes: int = 0
    resyncs: int = 0
    valid: bool = False


def depth_items(paths: Iterable[Path], symbol: str) -> Iterator[tuple[str, Any]]:
    """``("snapshot", payload)`` and ``("delta", event)`` of ``symbol`` in the recordings, in recorded order."""
    stream = f'{{"stream":"{symbol.lower()}@depth'.encode()
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            for line in handle:
                _, _, frame = line.strip().partition(b" ")
                if frame.startswith(b'{"lastUpdateId"'):
                    yield "snapshot", orjson.loads(frame)
                elif frame.startswith(stream):
                    yield "delta", orjson.loads(frame)["data"]


def replay(
    items: Iterable[tuple[str, Any]],
    pusher: BookPusher,
    symbol: str,
    speed: float = 1.0,
    drop_event: int = 0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayStats:
    """Feed the items to a fresh sync and its book to ``pusher``, one recorded second per ``1 / speed`` seconds.

    ``speed`` 0 replays as fast as it can (the pusher still holds each market to its rate). ``drop_event`` N > 0
    never applies the N-th depth event, as a lost frame would: the book breaks and, the recording holding no later
    snapshot, stays resyncing to the end. The last state is flushed before returning.
    """
    sync = BinanceBookSync(symbol.upper())
    stats = ReplayStats()
    first_ms: int | None = None
    started = clock()
    was_valid = False
    pushed_before = pusher.pushed
    for kind, payload in items:
        if kind == "snapshot":
            sync.on_snapshot(payload)
        else:
            stats.events += 1
            if stats.events == drop_event:
                stats.dropped += 1
                continue
            event_ms = payload.get("E")
            if speed > 0 and isinstance(event_ms, int):
                first_ms = event_ms if first_ms is None else first_ms
                wait = started + (event_ms - first_ms) / 1000 / speed - clock()
                _wait_flushing(pusher, wait, clock, sleep)
            sync.on_delta(payload)
        if sync.valid or was_valid:
            stats.updates += 1
            pusher([("binance", sync.symbol, sync.book, sync.valid)])
        was_valid = sync.valid
    _drain(pusher, sleep)
    stats.resyncs, stats.valid = sync.resyncs, sync.valid
    stats.pushes = pusher.pushed - pushed_before
    return stats


def _wait_flushing(
    pusher: BookPusher, seconds: float, clock: Callable[[], float], sleep: Callable[[float], None]
) -> None:
    """Wait ``seconds``, flushing each held market when its slot frees, as the book consumer's poll loop does."""
    deadline = clock() + seconds
    while (left := deadline - clock()) > 0:
        due = pusher.wait_s()
        # At least a millisecond a step: a slot a rounding away must not make the loop spin.
        sleep(max(MIN_STEP_S, left if due is None else min(due, left)))
        pusher.flush()


def _drain(pusher: BookPusher, sleep: Callable[[float], None], attempts: int = 3) -> None:
    """Flush until nothing is held: the last state of every market goes out (``attempts`` slots if sends fail)."""
    for _ in range(attempts):
        due = pusher.wait_s()
        if due is None:
            return
        sleep(max(MIN_STEP_S, due))
        pusher.flush()
