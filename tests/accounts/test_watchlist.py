"""Watchlists: the ordered markets of one user, through the API (GET/PUT) and the page (add, remove, reorder),
validated like the dashboard's markets and bounded by ``ACCOUNTS_MAX_WATCHLIST``."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts import watchlist
from accounts.models import WatchlistItem
from accounts.quotas import QuotaExceeded, check_quota
from tests.accounts.conftest import api_for, client_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]

MARKETS = [
    {"exchange": "kraken", "symbol": "BTC/USD"},
    {"exchange": "binance", "symbol": "ethusdt"},
    {"exchange": "coinbase", "symbol": "BTC-USD"},
]


def put(client: APIClient, items: Any) -> Any:
    return client.put("/api/v1/watchlist", {"items": items}, format="json")


def pairs(client: APIClient) -> list[tuple[str, str]]:
    return [(i["exchange"], i["symbol"]) for i in client.get("/api/v1/watchlist").json()["results"]]


def test_put_replaces_the_list_in_order(alice: Any) -> None:
    api = api_for(alice)
    assert api.get("/api/v1/watchlist").json() == {"results": [], "limit": 50}
    response = put(api, MARKETS)
    assert response.status_code == 200, response.content
    assert [i["position"] for i in response.json()["results"]] == [0, 1, 2]
    expected = [("kraken", "BTC/USD"), ("binance", "ETHUSDT"), ("coinbase", "BTC-USD")]
    assert pairs(api) == expected
    put(api, list(reversed(MARKETS[:2])))
    assert pairs(api) == [("binance", "ETHUSDT"), ("kraken", "BTC/USD")]
    assert put(api, []).status_code == 200
    assert pairs(api) == []


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ("BTCUSDT", "items"),
        (["binance:BTCUSDT"], "items[0]"),
        ([{"exchange": "binance"}], "items[0].symbol"),
        ([{"symbol": "BTCUSDT"}], "items[0].exchange"),
        ([{"exchange": "ftx", "symbol": "BTCUSDT"}], "items[0].exchange"),
        ([MARKETS[0], {"exchange": "binance", "symbol": "BTC USDT"}], "items[1].symbol"),
        ([MARKETS[0], {"exchange": "binance", "symbol": "B" * 33}], "items[1].symbol"),
        ([MARKETS[0], {"exchange": "binance", "symbol": "<script>"}], "items[1].symbol"),
        ([MARKETS[1], {"exchange": "Binance", "symbol": "ETHUSDT"}], "items[1]"),
    ],
)
def test_bad_items_are_400_naming_the_param(alice: Any, items: Any, param: str) -> None:
    api = api_for(alice)
    put(api, MARKETS[:1])
    response = put(api, items)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert pairs(api) == [("kraken", "BTC/USD")]  # unchanged


def test_a_body_that_is_not_an_object_is_400(alice: Any) -> None:
    response = api_for(alice).put("/api/v1/watchlist", ["x"], format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "body"


def test_the_size_quota_is_a_400_naming_items(alice: Any, settings: Any) -> None:
    settings.ACCOUNTS_MAX_WATCHLIST = 2
    api = api_for(alice)
    response = put(api, MARKETS)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "param": "items",
        "code": "quota_exceeded",
        "message": "quota exceeded: at most 2 watchlist markets per user (you have 0, this adds 3).",
    }
    assert pairs(api) == []
    assert put(api, MARKETS[:2]).status_code == 200


def test_each_user_sees_only_their_own(alice: Any, bob: Any) -> None:
    put(api_for(alice), MARKETS)
    put(api_for(bob), MARKETS[2:])
    assert len(pairs(api_for(alice))) == 3
    assert pairs(api_for(bob)) == [("coinbase", "BTC-USD")]
    bob_item = WatchlistItem.objects.get(owner=bob)
    # the page's actions on another user's item are 404s and change nothing
    alice_client = client_for(alice)
    assert alice_client.post(f"/accounts/watchlist/{bob_item.pk}/", {"action": "remove"}).status_code == 404
    assert alice_client.post(f"/accounts/watchlist/{bob_item.pk}/", {"action": "up"}).status_code == 404
    assert WatchlistItem.objects.filter(pk=bob_item.pk).exists()


def test_the_watchlist_needs_a_user(settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    assert APIClient().get("/api/v1/watchlist").status_code == 401
    assert Client().get("/accounts/watchlist/").status_code == 302


def test_the_page_adds_removes_and_reorders(alice: Any, settings: Any) -> None:
    client = client_for(alice)
    assert "Your watchlist is empty" in client.get("/accounts/watchlist/").content.decode()
    for market in MARKETS:
        assert client.post("/accounts/watchlist/", market).status_code == 302
    assert client.post("/accounts/watchlist/", MARKETS[0]).status_code == 302  # already there: stays put
    assert watchlist.markets(alice) == [("kraken", "BTC/USD"), ("binance", "ETHUSDT"), ("coinbase", "BTC-USD")]
    html = client.get("/accounts/watchlist/").content.decode()
    assert html.index("kraken:BTC/USD") < html.index("binance:ETHUSDT") < html.index("coinbase:BTC-USD")
    last = WatchlistItem.objects.get(owner=alice, exchange="coinbase")
    client.post(f"/accounts/watchlist/{last.pk}/", {"action": "up"})
    client.post(f"/accounts/watchlist/{last.pk}/", {"action": "up"})
    client.post(f"/accounts/watchlist/{last.pk}/", {"action": "up"})  # already first: stays
    assert watchlist.markets(alice)[0] == ("coinbase", "BTC-USD")
    client.post(f"/accounts/watchlist/{last.pk}/", {"action": "down"})
    assert watchlist.markets(alice)[1] == ("coinbase", "BTC-USD")
    client.post(f"/accounts/watchlist/{last.pk}/", {"action": "remove"})
    assert watchlist.markets(alice) == [("kraken", "BTC/USD"), ("binance", "ETHUSDT")]
    assert client.post(f"/accounts/watchlist/{last.pk}/", {"action": "remove"}).status_code == 404
    assert client.post(f"/accounts/watchlist/{last.pk}/", {"action": "sideways"}).status_code == 400
    bad = client.post("/accounts/watchlist/", {"exchange": "binance", "symbol": "BTC USDT"})
    assert bad.status_code == 200
    assert "invalid symbol" in bad.content.decode()
    settings.ACCOUNTS_MAX_WATCHLIST = 2
    full = client.post("/accounts/watchlist/", {"exchange": "binance", "symbol": "SOLUSDT"})
    assert "quota exceeded" in full.content.decode()
    assert len(watchlist.markets(alice)) == 2


def test_add_rejects_an_unknown_exchange(alice: Any) -> None:
    with pytest.raises(watchlist.WatchlistError) as caught:
        watchlist.add(alice, "ftx", "BTCUSDT")
    assert caught.value.param == "exchange"


def test_check_quota_for_other_apps() -> None:
    check_quota(None, "alert rules", 4, 5)
    with pytest.raises(QuotaExceeded) as caught:
        check_quota(None, "backtests per hour", 10, 10, param="strategy", status_code=429)
    assert (caught.value.param, caught.value.status_code) == ("strategy", 429)
    assert "at most 10 backtests per hour" in caught.value.message
