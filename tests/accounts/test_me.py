"""My dashboard (/me/): the watchlist's live tiles in its order, and the alert sections it renders from context."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from accounts import watchlist
from tests.accounts.conftest import client_for
from tests.dashboard.api_factories import make_stats

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]

T = datetime(2024, 1, 1, tzinfo=UTC)


def test_my_dashboard_shows_the_watchlist_tiles_in_order(alice: Any) -> None:
    make_stats("binance", "ETHUSDT")
    make_stats("binance", "BTCUSDT")  # a market with stats, not on the list: not shown
    watchlist.replace(alice, [("kraken", "BTC/USD"), ("binance", "ETHUSDT")])
    client = client_for(alice)
    response = client.get("/me/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index('data-symbol="BTC/USD"') < html.index('data-symbol="ETHUSDT"')
    assert 'data-symbol="BTCUSDT"' not in html
    assert 'data-value="61837.63' in html
    assert [(t["exchange"], t["symbol"], t["stats"] is not None) for t in response.context["tiles"]] == [
        ("kraken", "BTC/USD", False),
        ("binance", "ETHUSDT", True),
    ]
    config = response.context["config"]
    assert config["ws"] == "/ws/overview/"
    assert config["markets"] == ["kraken:BTC/USD", "binance:ETHUSDT"]
    assert "dashboard/js/overview.js" in html
    assert "Recent alerts" in html
    assert "Alert rules" in html
    assert response.context["recent_alerts"] == []
    assert response.context["rules"] == []
    assert 'href="/me/"' in html  # the nav links it for signed-in users


def test_my_dashboard_renders_alerts_and_rules_it_is_given(alice: Any) -> None:
    # The alert rules' helper passes data in these two variables: the template already shows each item.
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    request = RequestFactory().get("/me/")
    request.user = alice
    html = render_to_string(
        "dashboard/me.html",
        {"tiles": [], "recent_alerts": [{"id": 7, "created_at": T}], "rules": [{"id": 3}], "page": "me"},
        request=request,
    )
    assert 'data-alert="7"' in html
    assert 'data-rule="3"' in html
    assert "Your watchlist is empty" in html


def test_my_dashboard_needs_a_user(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    response = Client().get("/me/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert 'href="/me/"' not in Client().get("/").content.decode()
