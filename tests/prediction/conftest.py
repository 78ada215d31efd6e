"""Fixtures of the prediction tests: the bundled BTCUSDT hourly archive imported into the test database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import DATA

BUNDLE = DATA / "binance-klines"


@pytest.fixture
def import_hourly(tmp_path: Path) -> Callable[[str, str], None]:
    """``import_hourly(from, to)``: the bundled BTCUSDT 1h klines of those days, through ``import_history``."""

    def _import(start: str, end: str) -> None:
        call_command(
            "import_history",
            "--mirror",
            str(BUNDLE),
            "--symbol",
            "BTCUSDT",
            "--interval",
            "1h",
            "--from",
            start,
            "--to",
            end,
            "--cache-dir",
            str(tmp_path / "history-cache"),
        )

    return _import


@pytest.fixture(autouse=True)
def artifact_dir(settings, tmp_path: Path) -> Path:
    """Model files of a test go to its own folder."""
    settings.PREDICTION_ARTIFACT_DIR = tmp_path / "models"
    return settings.PREDICTION_ARTIFACT_DIR
