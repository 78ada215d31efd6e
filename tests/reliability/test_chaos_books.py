"""The order-book scenarios of ``make chaos`` (:mod:`chaos.books`): the ground truth on a hand-computed recording,
the log readers, and one scenario end to end on the real stack, small.

The scenario runs the book pipeline (simulator replaying the Binance recording, ``ingest --channels books``,
``consume_books``) as real processes on a stack of its own (``scripts/stack_env.sh 17``; ``CHAOS_BOOKS_TEST_STACK``
moves it) and compares every stored book with the recording rebuilt by :mod:`chaos.booktruth`. The full-size runs
of every book scenario are ``make chaos``; their table is in docs/RELIABILITY.md.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chaos import booktruth
from chaos.books import BookOptions, BookRow, book_scenarios, check_rows, lives, replays, run_book_scenario
from chaos.harness import RECORDINGS, Stack, setup_database, stack_environment

D = Decimal


def _recording(tmp_path: Path, frames: list[dict[str, Any]]) -> Path:
    path = tmp_path / "tiny.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for i, frame in enumerate(frames):
            out.write(f"{1_000 + i} {json.dumps(frame, separators=(',', ':'))}\n")
    return path


def _event(first: int, last: int, time_ms: int, bids: list[list[str]], asks: list[list[str]]) -> dict[str, Any]:
    data = {"e": "depthUpdate", "E": time_ms, "s": "BTCUSDT", "U": first, "u": last, "b": bids, "a": asks}
    return {"stream": "btcusdt@depth@100ms", "data": data}


SNAPSHOT = {
    "lastUpdateId": 10,
    "bids": [["100.00", "1.00"], ["99.00", "2.00"], ["98.00", "3.00"]],
    "asks": [["101.00", "1.50"], ["102.00", "2.50"]],
}


def tiny(tmp_path: Path, *later: dict[str, Any]) -> booktruth.BookTruth:
    """An event before the snapshot (5..8, already in it), the snapshot at 10, then 9..12 straddling it, 13..13
    and ``later``."""
    frames = [
        _event(5, 8, 1_000, [["100.00", "7.00"]], []),
        SNAPSHOT,
        _event(9, 12, 1_500, [["100.00", "0.5"], ["99.50", "4.00"]], [["101.00", "0"]]),
        _event(13, 13, 2_100, [["98.00", "0.00000000"], ["97.00", "1.00"]], [["100.50", "0.25"]]),
        *later,
        {"stream": "btcusdt@trade", "data": {"e": "trade", "t": 1, "p": "100.0", "q": "1", "T": 2_200, "m": True}},
    ]
    return booktruth.BookTruth(booktruth.read_recording([_recording(tmp_path, frames)]))


def test_the_truth_follows_binances_procedure_on_a_hand_computed_book(tmp_path: Path) -> None:
    truth = tiny(tmp_path, _event(14, 15, 10_100, [["99.50", "0"]], [["103.00", "1.00"]]))
    # The event ending at 8 is in the snapshot: dropped; 9..12 straddles 11 and is applied whole.
    assert [e.last_id for e in truth.applied] == [12, 13, 15]
    assert truth.final.last_id == 15
    states = truth.states([12, 13, 15, 14], depth=2)
    assert set(states) == {12, 13, 15}  # 14 is no event's u
    # After 9..12: bids 100 -> 0.5, 99.5 new; ask 101 removed.
    s = states[12]
    assert (s.bids, s.asks) == ([(D("100"), D("0.5")), (D("99.5"), D(4))], [(D(102), D("2.5"))])
    assert (s.best_bid, s.best_ask, s.spread, s.mid, s.time_ms) == (D(100), D(102), D(2), D(101), 1_500)
    # 10 bps of 101: bids >= 100.899, asks <= 101.101: none either side.
    assert (s.bid_depth_10bps, s.ask_depth_10bps) == (D(0), D(0))
    # After 13: 98 removed ("0.00000000" is zero), 97 added, ask 100.50 added.
    s = states[13]
    assert s.bids == [(D(100), D("0.5")), (D("99.5"), D(4))]
    assert s.asks == [(D("100.5"), D("0.25")), (D(102), D("2.5"))]
    assert (s.spread, s.mid) == (D("0.5"), D("100.25"))
    # 10 bps of 100.25: bids >= 100.14975 (100 is not), asks <= 100.35025 (100.5 is not).
    assert (s.bid_depth_10bps, s.ask_depth_10bps) == (D(0), D(0))
    s = states[15]
    assert s.bids == [(D(100), D("0.5")), (D(99), D(2))]  # 99.5 removed
    assert s.asks == [(D("100.5"), D("0.25")), (D(102), D("2.5"))]
    # The windows a consumer stores: 0 s holds 12 then 13 (their last is 13), 10 s holds 15.
    assert truth.windows(10_000) == {0: 13, 10_000: 15}
    assert truth.windows(1_000) == {1_000: 12, 2_000: 13, 10_000: 15}


def test_the_truth_refuses_a_recording_it_cannot_rebuild(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hole"):
        tiny(tmp_path, _event(15, 16, 3_000, [], []))  # 14 missing
    with pytest.raises(ValueError, match="bridge"):
        booktruth.BookTruth(
            booktruth.read_recording(
                [_recording(tmp_path, [SNAPSHOT, _event(12, 14, 1_000, [], [])])]  # 11 missing
            )
        )
    with pytest.raises(ValueError, match="no REST snapshot"):
        booktruth.read_recording([_recording(tmp_path, [_event(1, 2, 1_000, [], [])])])


def test_the_bundled_recording_rebuilds_to_its_documented_book() -> None:
    """docs/BOOKS.md: snapshot 50093239218, 6,495 events (two before it), the book ends with 1,971 bids and 2,962
    asks."""
    truth = booktruth.BookTruth(booktruth.read_recording(RECORDINGS))
    assert truth.snapshot_id == 50093239218
    assert len(truth.recording.events) == 6495
    assert len(truth.applied) == 6493
    *_, (_, bids, asks) = truth.walk()
    assert (len(bids), len(asks)) == (1971, 2962)


def _snapshot_row(start: int, t: int, last_id: int | None, valid: bool, bids: Any, asks: Any) -> tuple[Any, ...]:
    return (start, t, last_id, valid, bids, asks)


def test_the_check_finds_a_wrong_valid_row_a_not_valid_row_with_levels_a_duplicate_and_a_wrong_end(
    tmp_path: Path,
) -> None:
    truth = tiny(tmp_path, _event(14, 15, 10_100, [["99.50", "0"]], [["103.00", "1.00"]]))
    bids13 = [["100.00000000", "0.50000000"], ["99.50", "4"]]  # another spelling of the same levels
    asks13 = [["100.50", "0.25"], ["102.00", "2.50"]]
    bids15 = [["100", "0.5"], ["99", "2"]]
    metric = {  # (second, t, last_id): best bid, best ask, spread, mid, 10 bps depths
        (1_000, 1_500, 12): (D(100), D(102), D(2), D(101), D(0), D(0)),
        (2_000, 2_100, 13): (D(100), D("100.5"), D("0.5"), D("100.25"), D(0), D(0)),
        (10_000, 10_100, 15): (D(100), D("100.5"), D("0.5"), D("100.25"), D(0), D(0)),
    }
    metrics = [(*k, True, *v) for k, v in metric.items()]
    right = [_snapshot_row(0, 2_100, 13, True, bids13, asks13), _snapshot_row(10_000, 10_100, 15, True, bids15, asks13)]
    row = BookRow("x")
    check_rows(right, metrics, truth, every_s=10, depth=2, row=row)
    assert (row.snapshots_wrong, row.metrics_wrong, row.invalid_not_empty, row.duplicates) == (0, 0, 0, 0)
    assert (row.windows_missing, row.windows_expected, row.final_ok) == (0, 5, True)

    # One quantity off, a row at an id that is no event's, a time that is not its event's: each counted wrong.
    wrong = [
        _snapshot_row(0, 2_100, 13, True, [["100", "0.6"], ["99.5", "4"]], asks13),
        _snapshot_row(0, 2_100, 14, True, bids13, asks13),
        _snapshot_row(0, 2_000, 13, True, bids13, asks13),
    ]
    for bad in wrong:
        row = BookRow("x")
        check_rows([bad, right[1]], metrics, truth, every_s=10, depth=2, row=row)
        assert row.snapshots_wrong == 1, bad
        assert row.windows_missing == (bad[2] != 13)
    row = BookRow("x")
    check_rows(right, [metrics[0], (*metrics[1][:4], D(101), *metrics[1][5:]), metrics[2]], truth, 10, 2, row)
    assert (row.metrics_wrong, row.final_ok) == (1, True)

    # A break: the window's row not valid. With levels it is counted; empty it is right, and the window is lost.
    row = BookRow("x")
    check_rows([_snapshot_row(0, 2_100, None, False, bids13, []), right[1]], metrics, truth, 10, 2, row)
    assert (row.invalid_not_empty, row.snapshots_valid, row.windows_missing) == (1, 1, 1)
    row = BookRow("x")
    check_rows([_snapshot_row(0, 2_100, None, False, [], []), right[1]], metrics, truth, 10, 2, row)
    assert (row.invalid_not_empty, row.snapshots_wrong, row.windows_missing) == (0, 0, 1)
    assert row.final_ok

    # A duplicate window; and an end that is not the recording's last book.
    row = BookRow("x")
    check_rows([right[0], *right], metrics, truth, 10, 2, row)
    assert row.duplicates == 1
    row = BookRow("x")
    check_rows(right[:1], metrics[:2], truth, 10, 2, row)
    assert (row.final_ok, row.snapshots_wrong, row.metrics_wrong) == (False, 0, 0)
    assert row.windows_missing == 2
    assert not row.ok


def test_process_counters_are_summed_over_lives_and_replays_read(tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    lines = [
        {"message": "ingest metrics", "metrics": {"book_resyncs": 1, "book_syncs": 2}},
        {"message": "ingest metrics", "metrics": {"book_resyncs": 3, "book_syncs": 4}},
        "[chaos] exited with -9: restarted",
        {"message": "ingest metrics", "metrics": {"book_resyncs": 0, "book_syncs": 1}},
        {"message": "ingest stopped", "metrics": {"book_resyncs": 2, "book_syncs": 3}},
        {"message": "books partition assigned", "partition": 0, "committed": None, "replay_from": None},
        {"message": "books partition assigned", "partition": 0, "committed": 900, "replay_from": 850},
    ]
    log.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    assert lives(log, "metrics", ("book_resyncs", "book_syncs")) == {"book_resyncs": 5, "book_syncs": 7}
    assert replays(log) == [(850, 900)]
    assert lives(tmp_path / "absent.log", None, ("breaks",)) == {"breaks": 0}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Stack 17: not the suite's own (20 and up), nor make chaos's (7 and 8), nor another module's (11 to 16), so this
    # module may run on a worker beside any of them.
    stack = Stack(stack_environment(int(os.environ.get("CHAOS_BOOKS_TEST_STACK", "17"))))
    try:
        stack.run("up")
        setup_database(stack)
        yield stack
    finally:
        stack.run("down")


@pytest.mark.integration
@pytest.mark.slow
def test_a_dropped_delta_resyncs_and_no_stored_book_is_ever_wrong(stack: Stack, tmp_path: Path) -> None:
    (scenario,) = book_scenarios(["books-delta-drop"])
    # Events 2500 and 5000 dropped: the last break is 150 s of recording (7.5 s here) before the end, so deltas follow
    # its resync (a book resynced after the last delta is not stored: docs/BOOKS.md, "Storage").
    opts = BookOptions(speed=20.0, depth_drop_every=2500, drain_timeout_s=60.0, logs=tmp_path)
    truth = booktruth.BookTruth(booktruth.read_recording(RECORDINGS))
    row = run_book_scenario(scenario, opts, stack, truth)
    print(row)  # the figures, shown with -s or -rP
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(tmp_path.rglob("*.log")))
    assert row.completed, f"{row}\n{tails}"
    assert row.final_ok, row
    # Each dropped event broke the book, which asked for a snapshot.
    assert row.resyncs == 2, f"{row}\n{tails}"
    assert row.syncs == 3
    assert (row.snapshots_wrong, row.metrics_wrong, row.invalid_not_empty, row.duplicates) == (0, 0, 0, 0), row
    # Each break left a not-valid row (ingest publishes the break), so the checks covered both kinds.
    assert row.snapshots_valid > 0
    assert row.metrics_valid > row.snapshots_valid
    assert row.metrics > row.metrics_valid
    assert row.ok
