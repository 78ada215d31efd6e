"""The longest-first module order of a parallel run (tests/durations.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import durations

pytestmark = pytest.mark.unit


@dataclass
class Item:
    nodeid: str


def test_modules_go_longest_first_keeping_their_own_order_and_unmeasured_ones_last() -> None:
    items = [
        Item("tests/a/test_quick.py::test_1"),
        Item("tests/a/test_new.py::test_1"),
        Item("tests/b/test_slow.py::test_2[x]"),
        Item("tests/a/test_quick.py::test_2"),
        Item("tests/b/test_slow.py::test_1"),
        Item("tests/a/test_other_new.py::test_1"),
    ]
    seconds = {"tests/a/test_quick.py": 1.5, "tests/b/test_slow.py": 600.0, "tests/gone.py": 99.0}
    assert [i.nodeid for i in durations.longest_first(items, seconds)] == [
        "tests/b/test_slow.py::test_2[x]",
        "tests/b/test_slow.py::test_1",
        "tests/a/test_quick.py::test_1",
        "tests/a/test_quick.py::test_2",
        "tests/a/test_new.py::test_1",
        "tests/a/test_other_new.py::test_1",
    ]


def test_a_junit_report_gives_each_modules_total_and_the_file_is_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest">'
        '<testcase classname="tests.a.test_b" name="test_1" time="1.25"/>'
        '<testcase classname="tests.a.test_b" name="test_2[x]" time="2.5"/>'
        '<testcase classname="tests.a.test_b.TestGroup" name="test_3" time="0.25"/>'
        '<testcase classname="tests.reliability.test_chaos" name="test_scenario[baseline]" time="60"/>'
        "</testsuite></testsuites>"
    )
    assert durations.from_junit(report) == {"tests/reliability/test_chaos.py": 60.0, "tests/a/test_b.py": 4.0}
    target = tmp_path / "durations.json"
    monkeypatch.setattr(durations, "DURATIONS", target)
    assert durations.main([str(report)]) == 0
    assert durations.load(target) == {"tests/reliability/test_chaos.py": 60.0, "tests/a/test_b.py": 4.0}
    assert durations.main([]) == 2


def test_a_missing_file_orders_nothing(tmp_path: Path) -> None:
    assert durations.load(tmp_path / "none.json") == {}


def test_the_committed_file_names_modules_that_exist() -> None:
    """A renamed module would silently lose its place; the file is refreshed from a whole run's report."""
    root = Path(durations.__file__).resolve().parent.parent
    measured = json.loads(durations.DURATIONS.read_text())
    assert measured
    assert [m for m in measured if not (root / m).is_file()] == []
