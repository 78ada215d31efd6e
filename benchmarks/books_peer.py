"""``make bench-books``: this project's Binance books against cryptofeed's, on the same simulator stream, same run.

Each round replays the bundled Binance depth recording (``data/binance-spot-ws/btcusdt_2024080{8,9}.gz``: its REST
snapshot and 6,495 ``depth@100ms`` events, 298,000 level updates) once to each side, each with a fresh
``simulate_exchange --speed 0 --preload`` and a fresh side process (the simulator plays depth once, so a longer
stream is made of rounds, not of a loop: every round is the real stream with its real ids). The order of the two
sides alternates round by round. The sides (docs/BENCHMARKS.md, "Books against cryptofeed"):

- **ours** (``benchmarks/books_ours.py``): ingest's depth connection (``WsClient``) with
  :class:`books.stream.BinanceBookFeed` as its frame handler, the Kafka producer replaced by a counting sink;
- **cryptofeed** (``benchmarks/books_cryptofeed.py``, in ``.venv-peer``): its ``Binance`` feed with ``L2_BOOK``
  (REST snapshot, ``order_book`` C library), a callback that only counts.

Each side measures itself the same way: from the first depth frame it handles to the event with the recording's
last ``u`` applied (so both REST snapshots are inside the window), wall time and the process's CPU time. A round's
figures: the frames handled (every event of the stream: those the snapshot already held are handled and dropped),
events/s = 6,495 / wall, level updates/s = the stream's level updates / wall, CPU per event. The rounds are summed
(total frames / total wall, total CPU / total frames) and each round's rate is kept. Beside them, measured in the
same rounds: the plain-dict reference replay (this module's, independent of :mod:`books`) as a machine reference.

Each side's final book (every level) is compared with a reference rebuilt here from the recording with plain dicts:
the recorded snapshot, the events up to the side's sync point (the ``lastUpdateId`` of the REST snapshot it got),
cut to the snapshot's ``limit`` best levels a side as the simulator serves it, then every later event. A round whose
book differs is reported with its first differences, and the targets then fail.

Memory per book: each side builds 10 books of 5,000 levels a side in a fresh process, as its snapshot path builds
them, and reports traced bytes (``tracemalloc``) and resident bytes (``/proc/self/statm``) per book.

    python -m benchmarks.books_peer [--rounds 10] [--json bench-results/books.json] [--py-spy DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from benchmarks.books import FILES, load_frames
from benchmarks.harness import ROOT, manage, wait_listening

SIDES = ("ours", "cryptofeed")
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
#: a round takes seconds: a side still running after this never applied the recording's last event
ROUND_TIMEOUT_S = 90
#: how many differences a failed comparison lists
SHOWN_DIFFERENCES = 5
#: the function under which each side handles a depth frame (its profile counts only the samples below it)
PROFILE_ROOTS = {"ours": "on_frame", "cryptofeed": "message_handler"}
#: how many functions a profile summary lists
PROFILE_TOP = 15

#: one side of a reference book: price -> qty, exact
RefSide = dict[Decimal, Decimal]
Level = tuple[Decimal, Decimal]


# ------------------------------------------------------------------------------------------------ the reference
def _set_rows(side: RefSide, rows: list[list[str]]) -> None:
    for price, qty in rows:
        if Decimal(qty) == 0:
            side.pop(Decimal(price), None)
        else:
            side[Decimal(price)] = Decimal(qty)


def reference_book(
    snapshot: dict[str, Any], events: list[dict[str, Any]], sync_id: int | None = None, limit: int | None = None
) -> dict[str, list[Level]]:
    """The book a client ends on, rebuilt with plain dicts: ``snapshot`` (the recording's REST snapshot), the events
    with ``u`` up to ``sync_id`` (the ``lastUpdateId`` of the snapshot the client got; the recorded one without),
    cut to the ``limit`` best levels a side (as ``/api/v3/depth?limit=`` answers), then every later event.
    Both sides best first."""
    bids: RefSide = {}
    asks: RefSide = {}
    _set_rows(bids, snapshot["bids"])
    _set_rows(asks, snapshot["asks"])
    start = snapshot["lastUpdateId"]
    sync = start if sync_id is None else sync_id
    if sync < start:
        raise ValueError(f"sync point {sync} is before the recorded snapshot {start}")
    for event in events:
        if start < event["u"] <= sync:
            _set_rows(bids, event["b"])
            _set_rows(asks, event["a"])
    if limit is not None:
        bids = dict(sorted(bids.items(), reverse=True)[:limit])
        asks = dict(sorted(asks.items())[:limit])
    for event in events:
        if event["u"] > sync:
            _set_rows(bids, event["b"])
            _set_rows(asks, event["a"])
    return {"bids": sorted(bids.items(), reverse=True), "asks": sorted(asks.items())}


def compare_books(book: dict[str, list[list[str]]], reference: dict[str, list[Level]]) -> dict[str, Any]:
    """Compare a side's final book (decimal strings, best first) with the reference, level by level and in order.

    Prices and quantities compare as exact decimals (``"0.10000000"`` equals ``"0.1"``). Returns ``equal``, each
    side's level count in both, and the first differences (``[side, index, got, expected]``).
    """
    differences: list[list[Any]] = []
    counts: dict[str, list[int]] = {}
    for key in ("bids", "asks"):
        got = [(Decimal(price), Decimal(qty)) for price, qty in book.get(key, [])]
        expected = reference[key]
        counts[key] = [len(got), len(expected)]
        for index in range(max(len(got), len(expected))):
            mine = got[index] if index < len(got) else None
            theirs = expected[index] if index < len(expected) else None
            if mine != theirs:
                differences.append([key, index, _show(mine), _show(theirs)])
    return {"equal": not differences, "levels": counts, "differences": differences[:SHOWN_DIFFERENCES]}


def _show(level: Level | None) -> list[str] | None:
    return None if level is None else [format(level[0], "f"), format(level[1], "f")]


# ------------------------------------------------------------------------------------------------ aggregation
def aggregate(rounds: list[dict[str, Any]], frames_per_round: int, levels_per_round: int) -> dict[str, Any]:
    """Sum one side's rounds: total frames / total wall and total CPU / total frames, each round's rate beside.

    ``rounds`` are a side's round results (``wall_s``, ``cpu_s``, ``book_equal``, ``load_1m``); a round with
    ``failed`` (no result: the side never applied the last event) is counted in ``failed_rounds`` only.
    """
    failed = [r for r in rounds if "failed" in r]
    rounds = [r for r in rounds if "failed" not in r]
    if not rounds:
        raise ValueError("no round to aggregate")
    wall = sum(r["wall_s"] for r in rounds)
    cpu = sum(r["cpu_s"] for r in rounds)
    frames = frames_per_round * len(rounds)
    levels = levels_per_round * len(rounds)
    rates = sorted(frames_per_round / r["wall_s"] for r in rounds)
    applied = sum(r.get("events_applied", 0) for r in rounds)
    return {
        "rounds": len(rounds),
        "events": frames,
        "level_updates": levels,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "events_per_s": round(frames / wall),
        "level_updates_per_s": round(levels / wall),
        "cpu_us_per_event": round(cpu / frames * 1e6, 2),
        "cpu_us_per_level_update": round(cpu / levels * 1e6, 3),
        "cpu_share": round(cpu / wall, 3),
        # The events after the side's snapshot; the others were handled and dropped (the snapshot held them). A
        # side whose snapshot came later applies fewer, so CPU per applied event is shown beside CPU per event.
        "events_applied": applied,
        "cpu_us_per_applied_event": round(cpu / applied * 1e6, 2) if applied else None,
        "round_events_per_s": {
            "min": round(rates[0]),
            "median": round(statistics.median(rates)),
            "max": round(rates[-1]),
        },
        "books_equal": sum(1 for r in rounds if r["book_equal"]),
        "failed_rounds": len(failed),
        "load_1m": [r["load_1m"] for r in rounds],
    }


def ratios(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    """Ours against cryptofeed, and whether the issue's target holds (rate at least cryptofeed's, CPU per update at
    most cryptofeed's, every round of both sides completed with its book equal to the reference)."""
    rate = ours["events_per_s"] / peer["events_per_s"]
    cpu = ours["cpu_us_per_event"] / peer["cpu_us_per_event"]
    equal = all(side["books_equal"] == side["rounds"] and not side["failed_rounds"] for side in (ours, peer))
    mine, theirs = ours["cpu_us_per_applied_event"], peer["cpu_us_per_applied_event"]
    return {
        "rate_ours_over_cryptofeed": round(rate, 3),
        "cpu_per_event_ours_over_cryptofeed": round(cpu, 3),
        "cpu_per_applied_event_ours_over_cryptofeed": round(mine / theirs, 3) if mine and theirs else None,
        "all_books_equal": equal,
        "target_met": rate >= 1 and cpu <= 1 and equal,
    }


def memory_figures(result: dict[str, Any], levels_a_side: int) -> dict[str, Any]:
    """Per book and per level, from a side's memory run (``books`` built, ``traced_bytes``, ``rss_bytes``)."""
    books = result["books"]
    return {
        "books_built": books,
        "levels_a_side": levels_a_side,
        "traced_bytes_per_book": round(result["traced_bytes"] / books),
        "rss_bytes_per_book": round(result["rss_bytes"] / books),
        "traced_bytes_per_level": round(result["traced_bytes"] / books / (2 * levels_a_side), 1),
    }


def profile_shares(collapsed: str, root: str, top: int = PROFILE_TOP) -> dict[str, float]:
    """From py-spy's raw output (``frame;frame;... count`` lines, root first), the share of the samples taken
    under a frame whose function is ``root`` that each function at or below it appears in (inclusive), the ``top``
    largest."""
    counts: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        functions = [frame.split(" (")[0] for frame in stack.split(";")]
        below = next((index for index, function in enumerate(functions) if function.endswith(root)), None)
        if below is None:
            continue
        functions = functions[below:]  # the callers above the handler are in every sample: not listed
        total += int(number)
        for function in set(functions):
            counts[function] = counts.get(function, 0) + int(number)
    if not total:
        return {}
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    return {function: round(count / total, 3) for function, count in ranked}


def write_result(path: Path, report: dict[str, Any]) -> None:
    """Write the report as indented JSON (its directory created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------------------------ running
def _side_argv(side: str, *args: str) -> list[str]:
    if side == "ours":
        return [sys.executable, "-m", "benchmarks.books_ours", *args]
    return [str(PEER_PYTHON), str(ROOT / "benchmarks" / "books_cryptofeed.py"), *args]


def run_round(side: str, last_id: int, work: Path, tag: str, py_spy: Path | None = None) -> dict[str, Any]:
    """One fresh simulator and one fresh side process; the side's result (its final book included)."""
    sim_log = work / f"sim-{tag}.log"
    argv = manage("simulate_exchange", "--exchange", "binance", "--port", "0", "--speed", "0", "--ping-interval", "0")
    argv += ["--preload", "--replay", *map(str, FILES)]
    with sim_log.open("wb") as log:
        sim = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        port = wait_listening(sim_log, sim)
        out = work / f"{tag}.json"
        argv = _side_argv(side, "round", "--ws", f"ws://127.0.0.1:{port}", "--rest", f"http://127.0.0.1:{port}")
        argv += ["--last-id", str(last_id), "--out", str(out)]
        if py_spy is not None:
            argv = [
                str(ROOT / ".venv/bin/py-spy"),
                "record",
                "--format",
                "raw",
                "-o",
                str(py_spy / f"{tag}.txt"),
                "-r",
                "250",
                "--",
                *argv,
            ]
        load = os.getloadavg()[0]
        side_log = work / f"{tag}.log"
        with side_log.open("wb") as log:
            try:
                rc = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=ROUND_TIMEOUT_S)
                exit_code: int | str = rc.returncode
            except subprocess.TimeoutExpired:  # run() has killed it
                exit_code = f"killed after {ROUND_TIMEOUT_S} s"
        if not out.exists():
            # A side that never applies the recording's last event (stuck or crashed) fails the round, not the run.
            tail = side_log.read_text(errors="replace")[-1500:]
            return {"side": side, "failed": f"no result ({exit_code})", "log_tail": tail, "load_1m": round(load, 2)}
        result: dict[str, Any] = json.loads(out.read_text())
        result["load_1m"] = round(load, 2)
        return result
    finally:
        sim.terminate()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()


def run_memory(side: str, work: Path, books: int, levels_a_side: int) -> dict[str, Any]:
    """A side's memory run in a fresh process."""
    out = work / f"memory-{side}.json"
    argv = _side_argv(side, "memory", "--books", str(books), "--levels", str(levels_a_side), "--out", str(out))
    subprocess.run(argv, cwd=ROOT, check=True, timeout=300)
    return memory_figures(json.loads(out.read_text()), levels_a_side)


def run(rounds: int, py_spy: Path | None = None, books: int = 10, levels_a_side: int = 5000) -> dict[str, Any]:
    """Every round of both sides, the comparisons, the memory runs: the report."""
    if not PEER_PYTHON.exists():
        raise SystemExit(f"{PEER_PYTHON} is missing: run `make bench-books` (it installs requirements/peer.txt)")
    snapshot_raw, frames = load_frames(FILES)
    snapshot = orjson.loads(snapshot_raw)
    events = [orjson.loads(frame)["data"] for frame in frames]
    last_id = events[-1]["u"]
    levels_per_round = sum(len(e["b"]) + len(e["a"]) for e in events)
    started = datetime.datetime.now(datetime.UTC)
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    reference_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-books-") as tmp:
        work = Path(tmp)
        for number in range(rounds):
            order = SIDES if number % 2 == 0 else SIDES[::-1]
            for side in order:
                result = run_round(side, last_id, work, f"{side}-{number}")
                if "failed" in result:
                    results[side].append(result)
                    print(f"  round {number + 1}/{rounds} {side:<10} FAILED: {result['failed']}", flush=True)
                    continue
                began = time.process_time()
                reference = reference_book(
                    snapshot, events, (result["snapshot_ids"] or [None])[-1], result["snapshot_limit"]
                )
                reference_s.append(time.process_time() - began)
                check = compare_books(result, reference)
                kept = {k: v for k, v in result.items() if k not in ("bids", "asks")}
                kept.update(book_equal=check["equal"], book_check=check)
                results[side].append(kept)
                print(
                    f"  round {number + 1}/{rounds} {side:<10} {len(events) / result['wall_s']:>8,.0f} events/s "
                    f"{result['cpu_s'] / len(events) * 1e6:>6.1f} us CPU/event  book equal: {check['equal']}  "
                    f"load {result['load_1m']}",
                    flush=True,
                )
        profiles: dict[str, Any] = {}
        if py_spy is not None:
            py_spy.mkdir(parents=True, exist_ok=True)
            for side in SIDES:
                run_round(side, last_id, work, f"profile-{side}", py_spy)
                raw = py_spy / f"profile-{side}.txt"
                profiles[side] = {"file": str(raw), "shares": profile_shares(raw.read_text(), PROFILE_ROOTS[side])}
        memory = {side: run_memory(side, work, books, levels_a_side) for side in SIDES}
    sides = {side: aggregate(results[side], len(events), levels_per_round) for side in SIDES}
    return {
        "command": "make bench-books BENCH_ARGS='" + " ".join(sys.argv[1:]) + "'",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "recording": {
            "files": [path.name for path in FILES],
            "events_per_round": len(events),
            "level_updates_per_round": levels_per_round,
            "last_update_id": last_id,
        },
        "sides": sides,
        "ratios": ratios(sides["ours"], sides["cryptofeed"]),
        "machine_reference": {
            "what": "plain-dict replay of the whole recording from its snapshot (this module's reference), CPU",
            "events_per_s_median": round(len(events) / statistics.median(reference_s)),
        },
        "memory": memory,
        "memory_ratio_traced_ours_over_cryptofeed": round(
            memory["ours"]["traced_bytes_per_book"] / max(memory["cryptofeed"]["traced_bytes_per_book"], 1), 3
        ),
        "rounds": results,
        "profiles": profiles,
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="rounds per side (a fresh simulator each)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "books.json")
    parser.add_argument("--py-spy", type=Path, help="also profile one extra round per side into this directory")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    print(f"bench-books: {args.rounds} rounds per side, load average {os.getloadavg()[0]:.2f}", flush=True)
    report = run(args.rounds, args.py_spy)
    write_result(args.json, report)
    for side in SIDES:
        figures = report["sides"][side]
        print(
            f"{side:<10} {figures['events_per_s']:>8,} events/s {figures['level_updates_per_s']:>10,} levels/s "
            f"{figures['cpu_us_per_event']:>7} us CPU/event  books equal {figures['books_equal']}/{figures['rounds']}"
            f"  memory {report['memory'][side]['traced_bytes_per_book']:,} B/book traced, "
            f"{report['memory'][side]['rss_bytes_per_book']:,} RSS"
        )
    print(json.dumps(report["ratios"]), f"machine reference {report['machine_reference']['events_per_s_median']:,}")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
