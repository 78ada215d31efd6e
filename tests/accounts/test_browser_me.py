"""My dashboard in headless Chromium (Debian's, driven by Playwright): the overview's tile script limited to the
watchlist, in its order; screenshots to ``artifacts/screenshots/`` (me.png, accounts-watchlist.png,
accounts-tokens.png)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts import watchlist
from tests.accounts.conftest import PASSWORD
from tests.dashboard.api_factories import make_stats
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/stack.sh install)"),
]


def test_my_dashboard_shows_only_the_watchlist_in_order(live_server: Any, settings: Any) -> None:
    from playwright.sync_api import sync_playwright

    settings.DASHBOARD_LOGIN_REQUIRED = True
    user = get_user_model().objects.create_user("carol", email="carol@example.com", password=PASSWORD)
    make_stats("binance", "ETHUSDT")
    make_stats("binance", "BTCUSDT")  # has stats, served by /api/v1/stats, not on the list
    watchlist.replace(user, [("kraken", "BTC/USD"), ("binance", "ETHUSDT")])
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # bypass_csp: wait_for_function evaluates its expression with eval, which the pages' CSP refuses; the
            # pages under the policy are tests/dashboard/test_csp.py's.
            context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}])
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{live_server.url}/me/")
            # the script ran its first refresh from /api/v1/stats (which also has BTCUSDT)
            page.wait_for_function("document.body.dataset.loaded === 'true'", timeout=30_000)
            tiles = page.locator("#tiles .tile")
            assert [tiles.nth(i).get_attribute("data-symbol") for i in range(tiles.count())] == ["BTC/USD", "ETHUSDT"]
            eth = page.locator('.tile[data-symbol="ETHUSDT"] [data-field="last_price"]')
            assert eth.inner_text() == "61,837.63"
            waiting = page.locator('.tile[data-symbol="BTC/USD"] [data-field="trade_count"]')
            assert waiting.inner_text() == "—"  # no stats yet: a dash, not NaN
            assert page.inner_text("#sum-markets") == "2"
            assert page.locator("#recent-alerts h2").text_content() == "Recent alerts"
            assert page.locator("#alert-rules h2").text_content() == "Alert rules"
            page.screenshot(path=str(SCREENSHOTS / "me.png"), full_page=True)
            for name in ("watchlist", "tokens"):
                page.goto(f"{live_server.url}/accounts/{name}/")
                page.locator("h1").wait_for()
                page.screenshot(path=str(SCREENSHOTS / f"accounts-{name}.png"), full_page=True)
            assert page.locator("#token-table").count() == 0  # no tokens yet: the empty state
        finally:
            browser.close()
    assert errors == []
