"""Content-Security-Policy: the header on pages and the API docs, no inline script left for it to block, and the
pages, the live charts and the Swagger UI in headless Chromium with no CSP violation."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from analytics.models import Candle, SymbolStats
from benchmarks.harness import free_port
from tests.conftest import ChildProcess
from tests.dashboard.test_browser import CANDLES, CHROMIUM, CHROMIUM_ARGS, start_daphne

PAGES = [
    "/",
    "/me/",
    "/market/binance/BTCUSDT/",
    "/whales/",
    "/health/",
    "/models/",
    "/backtests/",
    "/alerts/",
    "/alerts/destinations/",
    "/notifications/",
    "/accounts/tokens/",
    "/accounts/watchlist/",
    "/accounts/login/",
    "/api/v1/docs",
]
PASSWORD = "csp-test-pass-123"  # a throwaway user in the test database
# <script> with no src attribute: an inline script, which script-src 'self' blocks (JSON data blocks do not run).
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\b(?:src=|type=\"application/json\"))[^>]*>", re.IGNORECASE)
# on...= event-handler attributes, which script-src 'self' blocks too.
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


def directives(policy: str) -> dict[str, list[str]]:
    """The policy's directives, each with its sources."""
    parts = (part.split() for part in policy.split(";") if part.strip())
    return {words[0]: words[1:] for words in parts}


@pytest.mark.django_db
@pytest.mark.parametrize("path", [*PAGES, "/api/v1/redoc", "/admin/", "/admin/auth/user/add/"])
def test_pages_and_api_docs_carry_a_policy_without_inline_scripts(client: Client, path: str) -> None:
    client.force_login(get_user_model().objects.create_superuser(username="csp", password=PASSWORD))
    response = client.get(path)
    assert response.status_code == 200
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    html = response.content.decode()
    assert not INLINE_SCRIPT.search(html), INLINE_SCRIPT.findall(html)
    assert not EVENT_HANDLER.search(html), EVENT_HANDLER.findall(html)
    # No third-party stylesheet or script (Redoc's page linked Google Fonts: templates/drf_spectacular/redoc.html).
    assert not re.search(r"<(link|script)[^>]+(href|src)=\"https?://", html), html


@pytest.mark.django_db
def test_swagger_ui_start_up_script_is_a_script_of_its_own(client: Client) -> None:
    """The split view: the page loads its start-up script from ``?script``, not inline."""
    html = client.get("/api/v1/docs").content.decode()
    script = re.search(r'<script src="([^"]*\?[^"]*script[^"]*)"', html)
    assert script, html
    response = client.get(script.group(1).replace("&amp;", "&"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in response.content.decode()


def seed_candles(symbol: str, minutes: int) -> None:
    """Recent 1m candles and 24h stats, so the symbol page's chart and the overview's tile have data to draw."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    price = Decimal("60000")
    Candle.objects.bulk_create(
        Candle(
            exchange="binance",
            symbol=symbol,
            interval="1m",
            open_time=now - timedelta(minutes=minutes - i),
            open=price + i,
            high=price + i + 5,
            low=price + i - 5,
            close=price + i + 1,
            volume=Decimal("1.5"),
            quote_volume=Decimal("90000"),
            trade_count=3,
            vwap=price + i,
        )
        for i in range(minutes)
    )
    SymbolStats.objects.create(
        exchange="binance",
        symbol=symbol,
        last_price=price + minutes,
        open_price=price,
        change_pct=Decimal("0.05"),
        high=price + minutes + 5,
        low=price - 5,
        volume=Decimal("45"),
        quote_volume=Decimal("2700000"),
        trade_count=3 * minutes,
        last_trade_at=now,
    )


# Redoc's bundle shows the Redocly logo from its CDN: the policy keeps that third-party request from loading (the page
# renders without it), the one violation expected.
REDOC_LOGO = "https://cdn.redoc.ly/"
# Recorded before any page script runs: every CSP violation the page reports.
LISTEN = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/stack.sh install)")
@pytest.mark.django_db(transaction=True)
def test_pages_charts_and_swagger_ui_run_with_no_csp_violation(spawn: Callable[..., ChildProcess]) -> None:
    from playwright.sync_api import sync_playwright

    # Staff, for the admin's pages.
    get_user_model().objects.create_superuser(username="csp", password=PASSWORD)
    seed_candles("BTCUSDT", 30)
    port = free_port()
    start_daphne(spawn, port)
    site = f"http://127.0.0.1:{port}"
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.add_init_script(LISTEN)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console: {msg.text}")
                    if msg.type == "error" and "Content Security Policy" in msg.text and REDOC_LOGO not in msg.text
                    else None
                ),
            )

            def violations() -> list[str]:
                return [str(v) for v in page.evaluate("() => window.__csp") if REDOC_LOGO not in v]

            page.goto(f"{site}/accounts/login/")
            page.fill("input[name=username]", "csp")
            page.fill("input[name=password]", PASSWORD)
            page.click("form[action='/accounts/login/'] button[type=submit]")
            page.wait_for_url(f"{site}/")
            page.wait_for_selector("body[data-loaded=true]")
            page.wait_for_selector(".tile[data-symbol=BTCUSDT] .spark[data-points]")
            problems += violations()

            # The live chart: Chart.js draws the candles from the API, the socket goes live.
            page.goto(f"{site}/market/binance/BTCUSDT/")
            page.wait_for_selector("body[data-loaded=true]")
            page.wait_for_selector("#conn-status[data-state=live]")
            page.wait_for_function(f"{CANDLES.removeprefix('() => ')} >= 30", timeout=30_000)
            problems += violations()

            for path in PAGES[3:-2]:
                page.goto(f"{site}{path}")
                page.wait_for_load_state("networkidle")
                problems += violations()

            # The Swagger UI renders the schema's operations.
            page.goto(f"{site}/api/v1/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() > 10
            problems += violations()

            # Redoc renders the schema too.
            page.goto(f"{site}/api/v1/redoc")
            page.wait_for_selector("[role=menuitem]", timeout=30_000)
            problems += violations()

            # Django's admin: the index and a form with its widgets' scripts.
            for path in ("/admin/", "/admin/auth/user/add/", "/admin/analytics/candle/"):
                page.goto(f"{site}{path}")
                page.wait_for_load_state("networkidle")
                assert page.url.endswith(path), page.url
                problems += violations()
            assert not problems, problems

            # The policy is enforced: a script injected inline does not run, and the page reports it.
            page.evaluate(
                "() => { const s = document.createElement('script');"
                " s.textContent = 'window.__injected = true'; document.body.append(s); }"
            )
            page.wait_for_function("() => window.__csp.length > 0")
            assert page.evaluate("() => window.__injected") is None
            assert violations()[0].startswith("script-src"), violations()
        finally:
            browser.close()
