"""Dashboard pages through Django's test client: empty and with data, login gate, static files."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

from analytics.models import SymbolStats, WhaleAlert
from dashboard.views import WAITING_HINT

ROOT = Path(__file__).resolve().parents[2]
VENDOR_FILES = [
    "vendor/chart.js/chart.umd.min.js",
    "vendor/chart.js/LICENSE",
    "vendor/chartjs-chart-financial/chartjs-chart-financial.min.js",
    "vendor/chartjs-chart-financial/LICENSE",
    "vendor/chartjs-adapter-date-fns/chartjs-adapter-date-fns.bundle.min.js",
    "vendor/chartjs-adapter-date-fns/LICENSE",
    "vendor/date-fns/LICENSE",
    "vendor/kurkle-color/LICENSE",
]
PAGES = ["/", "/market/binance/BTCUSDT/", "/whales/", "/health/"]

pytestmark = pytest.mark.django_db


@pytest.fixture
def open_dashboard(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False


@pytest.fixture
def market_data() -> None:
    now = datetime(2024, 8, 9, 0, 0, 1, tzinfo=UTC)
    SymbolStats.objects.create(
        exchange="binance",
        symbol="BTCUSDT",
        last_price=Decimal("61837.63"),
        open_price=Decimal("60000"),
        change_pct=Decimal("3.0627"),
        high=Decimal("62000.5"),
        low=Decimal("59000.25"),
        volume=Decimal("1234.5"),
        quote_volume=Decimal("76000000"),
        trade_count=19904,
        last_trade_at=now,
    )
    SymbolStats.objects.create(
        exchange="coinbase",
        symbol="ETH-USD",
        last_price=Decimal("2600.1"),
        open_price=Decimal("2700"),
        change_pct=Decimal("-3.7"),
        high=Decimal("2710"),
        low=Decimal("2590"),
        volume=Decimal("10"),
        quote_volume=Decimal("26001"),
        trade_count=279,
        last_trade_at=now,
    )
    WhaleAlert.objects.create(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id=3735700000,
        price=Decimal("61837.63"),
        quantity=Decimal("6.9"),
        notional=Decimal("426679.647"),
        side="buy",
        traded_at=now,
    )


def page_config(html: str) -> dict[str, Any]:
    match = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html, re.S)
    assert match, "page config missing"
    config: dict[str, Any] = json.loads(match.group(1))
    return config


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_without_data(client: Client, open_dashboard: None, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    # Every page tells the user what to do when the pipeline has not produced anything yet.
    assert "make demo" in html
    assert "CryptoPulse" in html
    assert 'href="/whales/"' in html
    assert 'href="/health/"' in html
    assert page_config(html)["waiting"] == WAITING_HINT


def test_overview_without_data_shows_the_waiting_hint(client: Client, open_dashboard: None) -> None:
    html = client.get("/").content.decode()
    assert "No markets yet" in html
    assert 'id="tiles-empty"' in html
    assert 'id="summary" hidden' in html
    assert 'class="tile"' not in html.split('id="tile-template"')[0]


def test_overview_renders_one_tile_per_market(client: Client, open_dashboard: None, market_data: None) -> None:
    response = client.get("/")
    html = response.content.decode()
    tiles = html.split('id="tile-template"')[0]
    assert tiles.count('class="tile"') == 2
    assert 'href="/market/binance/BTCUSDT/"' in tiles
    assert 'href="/market/coinbase/ETH-USD/"' in tiles
    assert 'data-value="61837.630000000000"' in tiles
    assert "3.06%" in tiles
    assert "-3.70%" in tiles
    assert 'class="empty" hidden' in html
    assert page_config(html)["ws"] == "/ws/overview/"
    assert 'id="summary" hidden' not in html
    assert 'id="sum-markets">2<' in html


def test_symbol_page_with_data(client: Client, open_dashboard: None, market_data: None) -> None:
    response = client.get("/market/binance/btcusdt/?interval=15m")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>BTCUSDT</h1>" in html
    assert "61,837.63" in html
    assert "3.06%" in html
    config = page_config(html)
    assert config["exchange"] == "binance"
    assert config["symbol"] == "BTCUSDT"
    assert config["interval"] == "15m"
    assert config["ws"] == "/ws/market/binance/BTCUSDT/"
    assert config["intervals"] == ["1m", "5m", "15m", "1h"]
    assert config["intervalSeconds"]["1h"] == 3600
    for interval in ("1m", "5m", "15m", "1h"):
        assert f'data-interval="{interval}"' in html
    assert 'data-interval="15m" class="active"' in html
    for element in ("candle-chart", "indicator-chart", "trade-tape", "whale-list", "conn-status"):
        assert f'id="{element}"' in html


def test_symbol_page_unknown_interval_falls_back(client: Client, open_dashboard: None) -> None:
    config = page_config(client.get("/market/binance/BTCUSDT/?interval=7m").content.decode())
    assert config["interval"] == "1m"


def test_kraken_symbol_with_slash(client: Client, open_dashboard: None) -> None:
    response = client.get("/market/kraken/btc/usd/")
    assert response.status_code == 200
    assert page_config(response.content.decode())["ws"] == "/ws/market/kraken/BTC/USD/"


@pytest.mark.parametrize("path", ["/market/nasdaq/BTCUSDT/", "/market/binance/BTC%20USDT/", "/market/binance/A--B/"])
def test_symbol_page_refuses_bad_markets(client: Client, open_dashboard: None, path: str) -> None:
    assert client.get(path).status_code == 404


def test_whales_page_filters(client: Client, open_dashboard: None, market_data: None) -> None:
    html = client.get("/whales/?market=binance:BTCUSDT&min_notional=250000").content.decode()
    config = page_config(html)
    assert config["market"] == "binance:BTCUSDT"
    assert config["minNotional"] == "250000"
    assert config["ws"] == "/ws/whales/"
    assert '<option value="binance:BTCUSDT" selected>' in html
    assert '<option value="coinbase:ETH-USD" >' in html
    assert 'value="250000"' in html
    assert "match these filters" in html
    assert "New alerts appear here live." in html


def test_health_page_polls_the_health_api(client: Client, open_dashboard: None) -> None:
    html = client.get("/health/").content.decode()
    assert page_config(html)["refreshMs"] == 3000
    for kpi in ("kpi-ingest", "kpi-lag", "kpi-queue", "kpi-dlq", "kpi-age"):
        assert f'id="{kpi}"' in html


@pytest.mark.parametrize("path", PAGES)
def test_login_required_redirects_anonymous_users(client: Client, settings: Any, path: str) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = True
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_logged_in_user_sees_the_pages_and_a_logout_form(client: Client, settings: Any, market_data: None) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = True
    user = get_user_model().objects.create_user(username="trader", password="s3cret-pass-123")
    client.force_login(user)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        assert "trader" in html
        assert 'action="/accounts/logout/"' in html
    # Only staff see the admin link.
    assert 'href="/admin/"' not in html


def test_anonymous_user_sees_a_login_link(client: Client, open_dashboard: None) -> None:
    html = client.get("/whales/").content.decode()
    assert 'href="/accounts/login/?next=/whales/"' in html


def test_referenced_static_files_exist(client: Client, open_dashboard: None) -> None:
    for path in PAGES:
        html = client.get(path).content.decode()
        refs = re.findall(r'(?:src|href)="/static/([^"]+)"', html)
        assert refs, path
        for ref in refs:
            assert finders.find(ref), f"{path} references missing static file {ref}"


def test_page_scripts_import_only_existing_modules() -> None:
    js_dir = ROOT / "dashboard/static/dashboard/js"
    for script in js_dir.glob("*.js"):
        for module in re.findall(r'from "\./([^"]+)"', script.read_text()):
            assert (js_dir / module).is_file(), f"{script.name} imports missing {module}"
        # No CDN: the runtime has no internet (the SVG namespace is a name, never fetched).
        urls = set(re.findall(r"https?://[^\s\"'`]+", script.read_text())) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{script.name} refers to {urls}"


def test_templates_load_nothing_from_other_hosts() -> None:
    for template in (ROOT / "dashboard/templates/dashboard").glob("*.html"):
        assert not re.search(r'(?:src|href)="(?:https?:)?//', template.read_text()), template.name


def test_collectstatic_finds_the_vendored_files(settings: Any, tmp_path: Path) -> None:
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    for name in [*VENDOR_FILES, "dashboard/css/dashboard.css", "dashboard/js/symbol.js"]:
        assert (tmp_path / "static" / name).is_file(), name


def test_production_collectstatic_hashes_and_compresses(settings: Any, tmp_path: Path) -> None:
    """The production storage (whitenoise manifest) post-processes every file: no dangling references."""
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    call_command("collectstatic", interactive=False, verbosity=0)
    manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())["paths"]
    for name in VENDOR_FILES[::2]:
        hashed = manifest[name]
        assert hashed != name
        assert (tmp_path / "static" / hashed).is_file()
        assert (tmp_path / "static" / f"{hashed}.gz").is_file()


def test_vendored_versions_match_package_json() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    versions = (ROOT / "dashboard/static/vendor/VERSIONS").read_text()
    for name in ("chart.js", "chartjs-chart-financial", "chartjs-adapter-date-fns"):
        assert re.fullmatch(r"\d+\.\d+\.\d+", package["dependencies"][name]), "versions must be pinned exactly"
        assert f"{name} {package['dependencies'][name]} MIT" in versions
        assert "MIT" in (ROOT / "dashboard/static/vendor" / name / "LICENSE").read_text()
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/chart.js"]["version"] == package["dependencies"]["chart.js"]


def test_healthz(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    # No consumer group in this test: its lag is unknown, which is not unhealthy (the web process is fine).
    assert body == {"status": "ok", "database": "ok", "consumers": body["consumers"]}
    assert body["consumers"] in ("ok", "unknown")
