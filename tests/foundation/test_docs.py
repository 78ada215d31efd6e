"""The README and docs/*.md as a new user reads them: tables that render, and the commands' settings shown where the
commands are listed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.management import load_command_class

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def broken_tables(text: str) -> list[int]:
    """Line numbers of table rows that follow a blank line with no header of their own: Markdown ends a table at a
    blank line, so such a row renders as a stray paragraph of pipes."""
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines[2:], start=3):
        if not line.startswith("|") or lines[number - 2].strip():
            continue
        starts_table = number < len(lines) and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[number].strip())
        if not starts_table and lines[number - 3].startswith("|"):
            found.append(number)
    return found


def test_the_check_finds_a_blank_line_inside_a_table() -> None:
    assert broken_tables("| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n") == [5]
    assert broken_tables("| a | b |\n|---|---|\n| 1 | 2 |\n\n| c | d |\n|---|---|\n") == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_no_table_is_cut_by_a_blank_line(path: Path) -> None:
    assert broken_tables(path.read_text()) == [], path


def test_the_readme_shows_how_to_point_ingest_at_the_simulator_and_its_metrics_port() -> None:
    (row,) = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `ingest ")]
    assert "BINANCE_WS_URL=ws://127.0.0.1:9443 BINANCE_REST_URL=http://127.0.0.1:9443" in row
    parser = load_command_class("ingest", "ingest").create_parser("manage.py", "ingest")
    default = next(a.default for a in parser._actions if a.dest == "metrics_port")
    assert f"default {default}" in row
