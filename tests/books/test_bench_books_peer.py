"""``make bench-books``' pure parts (benchmarks/books_peer.py): the reference book, the comparison that must be able
to fail, the aggregation of rounds, the ratios and the result file. No timing is asserted."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from benchmarks import books_peer as bench
from tests.books.frames import BINANCE_SNAPSHOT_ID, binance_deltas, binance_reference, binance_snapshot, sorted_levels

pytestmark = pytest.mark.unit

D = Decimal


def as_text(levels: dict[str, list[tuple[Decimal, Decimal]]]) -> dict[str, list[list[str]]]:
    """A book as a side's result file holds it: decimal strings, best first."""
    return {key: [[format(p, "f"), format(q, "f")] for p, q in rows] for key, rows in levels.items()}


def test_the_reference_from_the_recorded_snapshot_is_the_independent_rebuild() -> None:
    reference = bench.reference_book(binance_snapshot(), binance_deltas(), None, 1000)
    bids, asks, _ = binance_reference()
    assert reference == sorted_levels(bids, asks)
    assert (len(reference["bids"]), len(reference["asks"])) == (1971, 2962)


def test_a_later_sync_point_cuts_the_snapshot_to_its_limit_before_the_later_events() -> None:
    snapshot = {"lastUpdateId": 10, "bids": [["3", "1"], ["2", "1"], ["1", "1"]], "asks": [["4", "1"], ["5", "1"]]}
    events = [
        {"U": 5, "u": 9, "b": [["9", "9"]], "a": []},  # in the snapshot already: never applied
        {"U": 11, "u": 12, "b": [["2.5", "2"]], "a": [["5", "0"]]},  # before the sync point: in the served snapshot
        {"U": 13, "u": 14, "b": [["1", "7"]], "a": [["6", "1"]]},  # after it
    ]
    # Served at u=12 with limit 2: bids 3 and 2.5 (2 and 1 cut), asks 4; then u=14 brings bid 1 back and ask 6.
    reference = bench.reference_book(snapshot, events, 12, 2)
    assert reference == {"bids": [(D(3), D(1)), (D("2.5"), D(2)), (D(1), D(7))], "asks": [(D(4), D(1)), (D(6), D(1))]}
    # Without the cut, bid 2 would survive: the limit matters.
    assert (D(2), D(1)) in bench.reference_book(snapshot, events, 12)["bids"]
    with pytest.raises(ValueError, match="before the recorded snapshot"):
        bench.reference_book(snapshot, events, 9)


def test_the_comparison_passes_an_equal_book_and_fails_on_any_difference() -> None:
    reference = bench.reference_book(binance_snapshot(), binance_deltas(), BINANCE_SNAPSHOT_ID, 1000)
    book = as_text(reference)
    assert bench.compare_books(book, reference) == {
        "equal": True,
        "levels": {"bids": [1971, 1971], "asks": [2962, 2962]},
        "differences": [],
    }
    # trailing zeros are the same decimal
    padded = {**book, "bids": [[p + "000", q + "0"] if "." in p else [p, q] for p, q in book["bids"]]}
    assert bench.compare_books(padded, reference)["equal"]

    changed = {**book, "asks": [list(row) for row in book["asks"]]}
    changed["asks"][3][1] = "123.456"
    result = bench.compare_books(changed, reference)
    assert not result["equal"]
    assert result["differences"] == [["asks", 3, [book["asks"][3][0], "123.456"], book["asks"][3]]]

    missing = {**book, "bids": book["bids"][:-1]}
    result = bench.compare_books(missing, reference)
    assert not result["equal"]
    assert result["levels"]["bids"] == [1970, 1971]
    assert result["differences"] == [["bids", 1970, None, book["bids"][-1]]]

    swapped = {**book, "bids": [book["bids"][1], book["bids"][0], *book["bids"][2:]]}  # best first is checked too
    assert not bench.compare_books(swapped, reference)["equal"]
    many: dict[str, list[list[str]]] = {"bids": [], "asks": []}
    assert len(bench.compare_books(many, reference)["differences"]) == bench.SHOWN_DIFFERENCES


def a_round(wall: float, cpu: float, equal: bool = True, load: float = 1.0, applied: int = 900) -> dict[str, Any]:
    return {"wall_s": wall, "cpu_s": cpu, "book_equal": equal, "load_1m": load, "events_applied": applied}


def test_rounds_are_summed_and_each_round_rate_kept() -> None:
    rounds = [a_round(1.0, 0.5), a_round(2.0, 1.0, load=2.5), a_round(0.5, 0.3, equal=False)]
    figures = bench.aggregate(rounds, frames_per_round=1000, levels_per_round=50_000)
    assert figures == {
        "rounds": 3,
        "events": 3000,
        "level_updates": 150_000,
        "wall_s": 3.5,
        "cpu_s": 1.8,
        "events_per_s": 857,  # 3000 / 3.5, not the mean of the rounds' rates
        "level_updates_per_s": 42_857,
        "cpu_us_per_event": 600.0,
        "cpu_us_per_level_update": 12.0,
        "cpu_share": 0.514,
        "events_applied": 2700,
        "cpu_us_per_applied_event": 666.67,
        "round_events_per_s": {"min": 500, "median": 1000, "max": 2000},
        "books_equal": 2,
        "failed_rounds": 0,
        "load_1m": [1.0, 2.5, 1.0],
    }
    stuck = {"side": "cryptofeed", "failed": "no result (killed after 90 s)", "log_tail": "", "load_1m": 3.0}
    with_failure = bench.aggregate([*rounds, stuck], frames_per_round=1000, levels_per_round=50_000)
    assert with_failure == {**figures, "failed_rounds": 1}  # rates from the completed rounds only
    with pytest.raises(ValueError, match="no round"):
        bench.aggregate([], 1000, 1)


def test_the_target_needs_the_rate_the_cpu_and_every_book() -> None:
    peer = bench.aggregate([a_round(1.0, 0.5)], 1000, 1000)  # 1,000 events/s, 500 us/event
    faster = bench.aggregate([a_round(0.5, 0.25)], 1000, 1000)
    assert bench.ratios(faster, peer) == {
        "rate_ours_over_cryptofeed": 2.0,
        "cpu_per_event_ours_over_cryptofeed": 0.5,
        "cpu_per_applied_event_ours_over_cryptofeed": 0.5,
        "all_books_equal": True,
        "target_met": True,
    }
    costlier = bench.aggregate([a_round(0.5, 0.6)], 1000, 1000)  # faster, but more CPU per event
    assert bench.ratios(costlier, peer)["target_met"] is False
    slower = bench.aggregate([a_round(2.0, 0.4)], 1000, 1000)
    assert bench.ratios(slower, peer)["target_met"] is False
    wrong_peer = bench.aggregate([a_round(1.0, 0.5, equal=False)], 1000, 1000)
    assert bench.ratios(faster, wrong_peer) == {
        **bench.ratios(faster, peer),
        "all_books_equal": False,
        "target_met": False,
    }
    stuck_peer = bench.aggregate([a_round(1.0, 0.5), {"failed": "no result (1)", "load_1m": 1.0}], 1000, 1000)
    assert bench.ratios(faster, stuck_peer)["target_met"] is False


def test_memory_per_book_and_level_and_the_result_file(tmp_path: Path) -> None:
    figures = bench.memory_figures({"books": 10, "traced_bytes": 25_000_000, "rss_bytes": 40_960_000}, 5000)
    assert figures == {
        "books_built": 10,
        "levels_a_side": 5000,
        "traced_bytes_per_book": 2_500_000,
        "rss_bytes_per_book": 4_096_000,
        "traced_bytes_per_level": 250.0,
    }
    path = tmp_path / "results" / "books.json"
    bench.write_result(path, {"memory": figures, "when": D("1.5")})
    assert json.loads(path.read_text()) == {"memory": figures, "when": "1.5"}


def test_a_profile_counts_the_samples_under_the_frame_handler_only() -> None:
    collapsed = "\n".join(
        [
            "<module> (x.py:1);run (c.py:9);on_frame (b.py:3);parse_levels (book.py:70) 6",
            "<module> (x.py:1);run (c.py:9);on_frame (b.py:3);apply (book.py:200) 3",
            "<module> (x.py:1);run (c.py:9);on_frame (b.py:3) 1",
            "<module> (x.py:1);setup (django.py:1) 90",  # start-up: not under on_frame
            "garbage",
        ]
    )
    assert bench.profile_shares(collapsed, "on_frame") == {"on_frame": 1.0, "parse_levels": 0.6, "apply": 0.3}
    assert bench.profile_shares(collapsed, "on_frame", top=2) == {"on_frame": 1.0, "parse_levels": 0.6}
    assert bench.profile_shares(collapsed, "message_handler") == {}


def test_rounds_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--rounds", "0"])
    assert "--rounds must be at least 1" in capsys.readouterr().err
