"""benchmarks/books.py measures on a replay it checks: one pass on the bundled recording (figures asserted only to
exist and to be consistent, never against a threshold)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import books as bench

pytestmark = pytest.mark.unit


def test_one_pass_replays_the_whole_recording_and_reports_each_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench.main(["--passes", "1", "--json", str(tmp_path / "books.json")])
    report = json.loads((tmp_path / "books.json").read_text())
    printed = capsys.readouterr().out
    assert "books benchmark: 6,493 Binance depth events" in printed
    assert "  sync_path\n    wall_s" in printed
    assert report["events"] == 6493  # 6,495 recorded, less the two that end before the REST snapshot
    assert report["level_updates"] > report["events"]
    for path in ("sync_path", "book_only"):
        figures = report[path]
        assert figures["events_per_s"] > 0
        assert figures["level_updates_per_s"] > figures["events_per_s"]
        assert figures["cpu_us_per_level_update"] > 0
    assert report["memory_bytes_per_book_5000_levels_a_side"] > 0


def test_passes_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--passes", "0"])
    assert "--passes must be at least 1" in capsys.readouterr().err
