"""The longest modules first: how a parallel run keeps both workers busy until its end.

``--dist loadfile`` hands out whole modules in collection order (``--no-loadscope-reorder``: xdist's own order is by
the number of tests, and the chaos module's 13 tests take ten minutes where the 43 of ``test_records.py`` take one
second). A long module handed out last keeps one worker busy alone while the other idles: the first parallel run of
the suite ended with ten minutes of chaos scenarios on one worker. Handing out the longest first (the LPT rule) ends
both workers within a module of each other.

``tests/durations.json`` holds each module's seconds, measured in a whole run: after ``make pytest`` (which writes
``artifacts/junit.xml``), ``python -m tests.durations artifacts/junit.xml`` rewrites it. A module it does not name
(a new one) comes after those it names, in collection order; a stale figure only costs time, never a result.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

DURATIONS = Path(__file__).resolve().parent / "durations.json"


class _Item(Protocol):
    @property
    def nodeid(self) -> str: ...


ItemT = TypeVar("ItemT", bound=_Item)


def module_of(nodeid: str) -> str:
    """``tests/a/test_b.py::test_c[x]`` -> ``tests/a/test_b.py``."""
    return nodeid.split("::", 1)[0]


def load(path: Path = DURATIONS) -> dict[str, float]:
    """The measured seconds of each module; empty when the file is missing."""
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return {}


def longest_first(items: Sequence[ItemT], seconds: dict[str, float]) -> list[ItemT]:
    """``items`` with whole modules reordered by their measured seconds, longest first; a module's own tests keep
    their order, and modules without a figure follow in collection order (a stable sort)."""
    first_seen: dict[str, int] = {}
    for item in items:
        first_seen.setdefault(module_of(item.nodeid), len(first_seen))

    def key(item: ItemT) -> tuple[float, int]:
        module = module_of(item.nodeid)
        return (-seconds.get(module, 0.0), first_seen[module])

    return sorted(items, key=key)


def from_junit(path: Path) -> dict[str, float]:
    """Each module's total seconds (setup, call and teardown) from a pytest JUnit XML report."""
    totals: dict[str, float] = defaultdict(float)
    for case in ET.parse(path).getroot().iter("testcase"):
        # classname is the dotted module path (plus a class, for a test in one): tests.a.test_b[.TestC]
        parts = case.get("classname", "").split(".")
        while parts and not parts[-1].startswith("test_"):
            parts.pop()
        if parts:
            totals["/".join(parts) + ".py"] += float(case.get("time", "0"))
    return {module: round(seconds, 1) for module, seconds in sorted(totals.items(), key=lambda kv: -kv[1])}


def main(argv: list[str]) -> int:
    """``python -m tests.durations artifacts/junit.xml``: rewrite tests/durations.json from a whole run's report."""
    if len(argv) != 1:
        print("usage: python -m tests.durations JUNIT_XML", file=sys.stderr)
        return 2
    measured = from_junit(Path(argv[0]))
    DURATIONS.write_text(json.dumps(measured, indent=1) + "\n")
    print(f"{len(measured)} modules, {sum(measured.values()):.0f} s in all -> {DURATIONS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
