"""docs/API.md's candle examples, run as written on data shaped like the demo's: the bundled BTCUSDT history
imported as ``make history-demo`` imports it (an example dated 2024 once answered an empty list on the demo)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client

from tests.dashboard.api_factories import locmem_cache
from tests.history.conftest import BUNDLE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("locmem_cache")]
__all__ = ["locmem_cache"]

API_MD = Path(__file__).resolve().parents[2] / "docs" / "API.md"
CURL = re.compile(r'^curl .*"http://127\.0\.0\.1:8000(/api/v1/(?:candles|indicators)\?[^"]+)"$')


def documented_examples() -> list[str]:
    """The candle and indicator requests of docs/API.md, except those shown answering an error."""
    lines = API_MD.read_text().splitlines()
    return [
        match.group(1)
        for number, line in enumerate(lines)
        if (match := CURL.match(line.strip()))
        and not (number + 1 < len(lines) and lines[number + 1].lstrip().startswith("# -> 4"))
    ]


def test_the_docs_have_candle_examples() -> None:
    assert len(documented_examples()) >= 2


def test_every_documented_candle_example_returns_candles_on_the_demo_history(client: Client, settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    # What `make history-demo` imports (the 1m days roll up to 5m, 15m, 1h).
    call_command("import_history", "--mirror", str(BUNDLE), "--symbol", "BTCUSDT", "--interval", "1m",
                 "--from", "2020-01-01", "--to", "2020-01-03")  # fmt: skip
    for example in documented_examples():
        url = urlsplit(example)
        response = client.get(url.path, QUERY_STRING=url.query)
        assert response.status_code == 200, (example, response.content)
        assert response.json()["results"], f"{example} answers an empty list on the demo's history"
