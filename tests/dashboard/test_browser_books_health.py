"""The health page in a real browser shows ingest's book syncs and resyncs per exchange and the books consumers'
figures, from the Redis snapshots the processes write (``metrics:ingest:<exchange>``, ``metrics:books:<member>``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model

from benchmarks.harness import free_port
from cryptoproject.redis_clients import redis_client
from tests.conftest import ChildProcess
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, start_daphne

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/stack.sh install)"),
]


def test_the_health_page_shows_book_resyncs_and_the_books_consumer(spawn: Callable[..., ChildProcess]) -> None:
    from playwright.sync_api import sync_playwright

    client = redis_client()
    keys = {
        "metrics:ingest:binance": {"at": 1, "trades_published": 0, "book_syncs": 4, "book_resyncs": 3},
        "metrics:ingest:okx": {"at": 1, "trades_published": 0},
        "metrics:books:host-7": {"consumed": 6493, "markets": 2, "valid_markets": 1, "breaks": 1,
                                 "invalid_snapshots": 2, "dead_lettered": 5, "batches": 12},
    }  # fmt: skip
    for key, value in keys.items():
        client.set(key, json.dumps(value), ex=300)
    get_user_model().objects.create_user(username="books", password=PASSWORD)
    port = free_port()
    start_daphne(spawn, port)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(bypass_csp=True).new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(f"http://127.0.0.1:{port}/health/")
                page.fill("input[name=username]", "books")  # login required: the login page sends us back
                page.fill("input[name=password]", PASSWORD)
                page.click("form[action='/accounts/login/'] button[type=submit]")
                page.wait_for_url(re.compile(r".*/health/$"))
                page.wait_for_selector("#books-table tbody tr")
                rows = [
                    [c.inner_text() for c in r.query_selector_all("td")]
                    for r in page.query_selector_all("#ingest-table tbody tr")
                ]
                books = {row[0]: row[3] for row in rows}  # other tests' snapshots may still be in Redis
                assert (books["binance"], books["okx"]) == ("4 / 3", "—")
                members = [
                    [c.inner_text() for c in r.query_selector_all("td")]
                    for r in page.query_selector_all("#books-table tbody tr")
                ]
                assert ["host-7", "6,493", "1 / 2", "3", "5", "12"] in members
                assert errors == []
            finally:
                browser.close()
    finally:
        client.delete(*keys)
