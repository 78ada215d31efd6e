"""Micro-benchmark of the ``books`` library on the bundled Binance depth recording (no server, no peer yet).

Replays ``data/binance-spot-ws/btcusdt_2024080{8,9}.gz`` (the REST snapshot, then its 6,495 ``depth@100ms`` events)
through :class:`books.binance.BinanceBookSync` several times and reports, best pass of ``--passes``:

- **sync path**: JSON text to a synced book (``orjson.loads`` + the sequence check + decimal parsing + apply + the
  crossed check), per event and per level update;
- **book only**: :meth:`books.book.L2Book.apply` on levels already parsed to ``Decimal``;
- CPU seconds (``time.process_time``) beside the wall time, so a busy machine shows as wall > CPU;
- the traced memory of one book holding 5,000 levels a side.

Each pass ends on the same book (checked against the first pass), so no figure comes from a broken replay.

    python -m benchmarks.books [--passes 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

from benchmarks.harness import ROOT, print_report
from books.binance import BinanceBookSync
from books.book import L2Book, Level, parse_levels

FILES = (ROOT / "data/binance-spot-ws/btcusdt_20240808.gz", ROOT / "data/binance-spot-ws/btcusdt_20240809.gz")
MEMORY_LEVELS = 5_000


def load_frames(files: tuple[Path, ...] = FILES) -> tuple[bytes, list[bytes]]:
    """The REST snapshot line and every depth frame (raw JSON text) of the recording, in order."""
    snapshot = b""
    frames = []
    for path in files:
        with gzip.open(path, "rb") as handle:
            for line in handle:
                _, _, frame = line.partition(b" ")
                if frame.startswith(b'{"lastUpdateId"'):
                    snapshot = frame
                elif frame.startswith(b'{"stream":"btcusdt@depth@100ms"'):
                    frames.append(frame)
    if not snapshot:
        raise SystemExit(f"no REST snapshot line in {', '.join(map(str, files))}")
    return snapshot, frames


def _timed(func: Any) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = func()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def sync_pass(snapshot: bytes, frames: list[bytes]) -> BinanceBookSync:
    """One replay from JSON text: the first three events are buffered before the snapshot, as recorded."""
    sync = BinanceBookSync("BTCUSDT")
    for frame in frames[:3]:
        sync.on_delta(orjson.loads(frame)["data"])
    sync.on_snapshot(orjson.loads(snapshot))
    for frame in frames[3:]:
        sync.on_delta(orjson.loads(frame)["data"])
    if not sync.valid or sync.resyncs:
        raise SystemExit(f"the replay broke: {sync.last_break}")
    return sync


def book_pass(snapshot: tuple[list[Level], list[Level]], events: list[tuple[list[Level], list[Level]]]) -> L2Book:
    """One replay of pre-parsed levels straight into a book (no JSON, no sequence check)."""
    book = L2Book()
    book.apply_snapshot(*snapshot)
    apply = book.apply
    for bids, asks in events:
        apply(bids, asks)
    return book


def memory_per_book(levels: int = MEMORY_LEVELS) -> int:
    """Bytes traced for one book of ``levels`` bids and ``levels`` asks (8-decimal strings, as Binance sends)."""
    bids = [(f"{60000 - i * 0.01:.8f}", f"{0.001 * (i % 97 + 1):.8f}") for i in range(levels)]
    asks = [(f"{60000.01 + i * 0.01:.8f}", f"{0.001 * (i % 89 + 1):.8f}") for i in range(levels)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book = L2Book()
    book.apply_snapshot(parse_levels(bids, "bids"), parse_levels(asks, "asks"))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    if len(book.bids) != levels or len(book.asks) != levels:
        raise SystemExit("the memory book lost levels")
    return used


def run(passes: int, files: tuple[Path, ...] = FILES) -> dict[str, Any]:
    """Measure; the figures as a dict (see the module docstring)."""
    snapshot, frames = load_frames(files)
    decoded = [orjson.loads(frame)["data"] for frame in frames]
    snap = orjson.loads(snapshot)
    applied = [event for event in decoded if event["u"] > snap["lastUpdateId"]]
    levels = sum(len(event["b"]) + len(event["a"]) for event in applied)
    parsed = [(parse_levels(event["b"], "b"), parse_levels(event["a"], "a")) for event in applied]
    parsed_snapshot = (parse_levels(snap["bids"], "bids"), parse_levels(snap["asks"], "asks"))
    sync_runs = [_timed(lambda: sync_pass(snapshot, frames)) for _ in range(passes)]
    book_runs = [_timed(lambda: book_pass(parsed_snapshot, parsed)) for _ in range(passes)]
    reference = sync_runs[0][2].book.as_lists(MEMORY_LEVELS)
    for _, _, sync in sync_runs:
        if sync.book.as_lists(MEMORY_LEVELS) != reference:
            raise SystemExit("two passes ended on different books")
    for _, _, book in book_runs:
        if book.as_lists(MEMORY_LEVELS) != reference:
            raise SystemExit("the book-only pass ended on another book than the sync path")

    def figures(runs: list[tuple[float, float, Any]]) -> dict[str, float]:
        wall = min(timing[0] for timing in runs)
        cpu = min(timing[1] for timing in runs)
        return {
            "wall_s": round(wall, 4),
            "cpu_s": round(cpu, 4),
            "events_per_s": round(len(applied) / wall),
            "level_updates_per_s": round(levels / wall),
            "cpu_us_per_event": round(cpu / len(applied) * 1e6, 2),
            "cpu_us_per_level_update": round(cpu / levels * 1e6, 3),
        }

    return {
        "events": len(applied),
        "level_updates": levels,
        "final_levels": {"bids": len(reference["bids"]), "asks": len(reference["asks"])},
        "passes": passes,
        "sync_path": figures(sync_runs),
        "book_only": figures(book_runs),
        "memory_bytes_per_book_5000_levels_a_side": memory_per_book(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the figures (and write them as JSON when asked)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=5, help="replays of the recording; the best is reported")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.passes < 1:
        parser.error("--passes must be at least 1")
    report = run(args.passes)
    print(f"books benchmark: {report['events']:,} Binance depth events, {report['level_updates']:,} level updates")
    print_report(report, key_width=44)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
