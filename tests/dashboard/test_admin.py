"""The admin on many rows: every changelist and change page loads, with a bounded number of queries and no full
``COUNT(*)`` or ``SELECT DISTINCT`` over the trade table (counts stop at ``COUNT_CAP`` rows)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from alerts.models import Alert, AlertRule
from analytics.models import Candle, IndicatorPoint, SymbolStats, SymbolThreshold, Trade, WhaleAlert
from analytics.paginators import COUNT_CAP, EstimatedCountPaginator, bounded_count
from notifications.models import Delivery, Destination, Notification
from tests.dashboard.api_factories import T0, make_stats, make_trades

TRADES = 50_000
PAIRS = [("binance", "BTCUSDT"), ("binance", "ETHUSDT"), ("coinbase", "BTC-USD"), ("kraken", "BTC/USD")]
MAX_QUERIES = 16


@pytest.fixture(scope="module")
def many_rows(django_db_setup: Any, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    """50,000 trades over three days (COPY), plus thousands of candles, indicators, alerts and deliveries."""
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            columns = "exchange, symbol, trade_id, price, quantity, is_buyer_maker, traded_at, received_at"
            with cursor.copy(f"COPY {Trade._meta.db_table} ({columns}) FROM STDIN") as copy:
                for i in range(TRADES):
                    exchange, symbol = PAIRS[i % len(PAIRS)]
                    at = T0 + timedelta(seconds=i * 5)  # ~2.9 days: 2024-08-09 .. 2024-08-11
                    copy.write_row((exchange, symbol, 10_000 + i, "61000.5", "0.01", i % 3 == 0, at, at))
            cursor.execute(f"ANALYZE {Trade._meta.db_table}")
        Candle.objects.bulk_create(
            Candle(
                exchange="binance",
                symbol="BTCUSDT",
                interval="1m",
                open_time=T0 + timedelta(minutes=i),
                open=1,
                high=2,
                low=1,
                close=2,
                volume=1,
                quote_volume=1,
                trade_count=1,
                vwap=1,
            )
            for i in range(5000)
        )
        IndicatorPoint.objects.bulk_create(
            IndicatorPoint(exchange="binance", symbol="BTCUSDT", open_time=T0 + timedelta(minutes=i))
            for i in range(5000)
        )
        alerts = WhaleAlert.objects.bulk_create(
            WhaleAlert(
                exchange="binance",
                symbol="BTCUSDT",
                trade_id=10_000 + i,
                price=62500,
                quantity=4,
                notional=250000,
                side="buy",
                traded_at=T0 + timedelta(seconds=i),
            )
            for i in range(2000)
        )
        owner = get_user_model().objects.create_user("owner-e", password="pw-owner-123", is_staff=True)
        destination = Destination.objects.create(owner=owner, kind="email", target="ops@example.com")
        rule = AlertRule.objects.create(
            owner=owner, kind="whale", params={"min_notional": "200000"}, channels=["email"]
        )
        rule.destinations.set([destination])
        fired = Alert.objects.bulk_create(
            Alert(
                rule=rule,
                kind="whale",
                exchange=a.exchange,
                symbol=a.symbol,
                trigger=f"trade:{a.trade_id}",
                trade_id=a.trade_id,
                price=a.price,
                traded_at=a.traded_at,
                message="whale",
            )
            for a in alerts
        )
        Delivery.objects.bulk_create(
            Delivery(destination=destination, kind="email", key=f"alert:{f.pk}:{destination.pk}", subject="s", body="b")
            for f in fired
        )
        Notification.objects.bulk_create(
            Notification(owner=owner, key=f"alert:{f.pk}", subject="s", body="b") for f in fired[:100]
        )
        for exchange, symbol in PAIRS:
            make_stats(exchange, symbol)
            SymbolThreshold.objects.create(exchange=exchange, symbol=symbol, threshold_usd=Decimal("250000"))
        yield {"owner": owner, "rule": rule, "destination": destination, "alert": alerts[0]}
        for owned in (Delivery, Notification, Alert, AlertRule, Destination):
            owned.objects.all().delete()
        get_user_model().objects.filter(username="owner-e").delete()
        for model in (Trade, Candle, IndicatorPoint, WhaleAlert, SymbolStats, SymbolThreshold):
            model.objects.all().delete()


pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("many_rows")]

CHANGELISTS = [
    "analytics/trade",
    "analytics/candle",
    "analytics/indicatorpoint",
    "analytics/whalealert",
    "analytics/symbolstats",
    "analytics/symbolthreshold",
    "alerts/alertrule",
    "alerts/alert",
    "notifications/destination",
    "notifications/delivery",
    "notifications/notification",
]


def _trade_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if Trade._meta.db_table in q["sql"]]


@pytest.mark.parametrize("path", CHANGELISTS)
def test_changelist_loads_with_bounded_queries(
    admin_client: Client, path: str, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(f"/admin/{path}/")
    assert response.status_code == 200
    assert response.context["cl"].result_count > 0


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("analytics/trade", Trade),
        ("analytics/candle", Candle),
        ("analytics/indicatorpoint", IndicatorPoint),
        ("analytics/whalealert", WhaleAlert),
        ("analytics/symbolstats", SymbolStats),
        ("analytics/symbolthreshold", SymbolThreshold),
        ("alerts/alertrule", AlertRule),
        ("alerts/alert", Alert),
        ("notifications/destination", Destination),
        ("notifications/delivery", Delivery),
        ("notifications/notification", Notification),
    ],
)
def test_change_page_loads(admin_client: Client, path: str, model: Any, django_assert_max_num_queries: Any) -> None:
    obj = model.objects.order_by("-pk").first()
    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(f"/admin/{path}/{obj.pk}/change/")
    assert response.status_code == 200


def test_trade_changelist_counts_without_count_star(admin_client: Client) -> None:
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get("/admin/analytics/trade/")
    cl = response.context["cl"]
    assert isinstance(cl.paginator, EstimatedCountPaginator)
    # The planner's estimate after ANALYZE, not an exact count.
    assert abs(cl.result_count - TRADES) < TRADES * 0.2
    assert len(cl.result_list) == 100
    trade_sql = _trade_queries(captured)
    counts = [sql for sql in trade_sql if "COUNT(" in sql.upper()]
    assert counts, trade_sql
    assert all(f"LIMIT {COUNT_CAP + 1}" in sql for sql in counts), counts  # never a full COUNT(*)
    assert not any("DISTINCT" in sql.upper() for sql in trade_sql), trade_sql
    html = response.content.decode()
    for column in ("Traded at", "Exchange", "Symbol", "Trade id", "Side", "Price", "Quantity", "Quote quantity"):
        assert column in html
    # Date hierarchy from index probes: the years/days of the data.
    assert "traded_at__month=8" in html
    assert "traded_at__day=11" in html


def test_trade_filters_use_bounded_counts(admin_client: Client) -> None:
    response = admin_client.get("/admin/analytics/trade/", {"exchange": "binance", "symbol": "ETHUSDT", "side": "sell"})
    cl = response.context["cl"]
    rows = list(cl.result_list)
    assert rows
    assert all((r.exchange, r.symbol, r.is_buyer_maker) == ("binance", "ETHUSDT", True) for r in rows)
    # One symbol selected: newest first through the (exchange, symbol, traded_at, trade_id) index.
    assert [r.traded_at for r in rows] == sorted((r.traded_at for r in rows), reverse=True)
    expected = Trade.objects.filter(exchange="binance", symbol="ETHUSDT", is_buyer_maker=True).count()
    assert cl.result_count == min(expected, COUNT_CAP + 1)
    html = response.content.decode()
    for exchange, symbol in PAIRS:
        assert f"?exchange={exchange}" in html or f"exchange={exchange}&" in html
        assert symbol.replace("/", "%2F") in html


def test_trade_search_is_an_exact_trade_id(admin_client: Client) -> None:
    response = admin_client.get("/admin/analytics/trade/", {"q": "10042"})
    assert [t.trade_id for t in response.context["cl"].result_list] == [10042]
    assert list(admin_client.get("/admin/analytics/trade/", {"q": "1004"}).context["cl"].result_list) == []
    assert list(admin_client.get("/admin/analytics/trade/", {"q": "btc"}).context["cl"].result_list) == []
    whales = admin_client.get("/admin/analytics/whalealert/", {"q": "10007"}).context["cl"].result_list
    assert [w.trade_id for w in whales] == [10007]
    assert list(admin_client.get("/admin/analytics/whalealert/", {"q": "x"}).context["cl"].result_list) == []


@pytest.mark.parametrize(
    ("params", "expect"),
    [
        ({"traded_at__year": "2024"}, "traded_at__month=8"),
        ({"traded_at__year": "2024", "traded_at__month": "8"}, "traded_at__day=10"),
        ({"traded_at__year": "2024", "traded_at__month": "8", "traded_at__day": "10"}, "August 10"),
        ({"traded_at__year": "2024", "exchange": "kraken"}, "traded_at__month=8"),
        ({"traded_at__year": "2023"}, "All dates"),
    ],
)
def test_trade_date_hierarchy_drilldown(
    admin_client: Client, params: dict[str, str], expect: str, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(MAX_QUERIES), CaptureQueriesContext(connection) as captured:
        response = admin_client.get("/admin/analytics/trade/", params)
    assert response.status_code == 200
    assert expect in response.content.decode()
    assert not any("DISTINCT" in sql.upper() for sql in _trade_queries(captured))
    rows = list(response.context["cl"].result_list)
    assert bool(rows) == (params["traded_at__year"] == "2024")
    if "traded_at__day" in params:
        assert all(r.traded_at.day == 10 for r in rows)
        assert [r.traded_at for r in rows] == sorted((r.traded_at for r in rows), reverse=True)


def test_trade_data_is_read_only(admin_client: Client) -> None:
    trade = Trade.objects.order_by("pk").first()
    assert trade is not None
    assert admin_client.get("/admin/analytics/trade/add/").status_code == 403
    assert admin_client.get(f"/admin/analytics/trade/{trade.pk}/delete/").status_code == 403
    page = admin_client.get(f"/admin/analytics/trade/{trade.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    before = trade.price
    admin_client.post(f"/admin/analytics/trade/{trade.pk}/change/", {"price": "1"})
    trade.refresh_from_db()
    assert trade.price == before


def test_threshold_is_editable(admin_client: Client) -> None:
    threshold = SymbolThreshold.objects.get(exchange="binance", symbol="BTCUSDT")
    response = admin_client.post(
        f"/admin/analytics/symbolthreshold/{threshold.pk}/change/",
        {"exchange": "binance", "symbol": "BTCUSDT", "threshold_usd": "500000"},
    )
    assert response.status_code == 302
    threshold.refresh_from_db()
    assert threshold.threshold_usd == Decimal("500000")


def test_staff_see_only_their_own_alert_rows_and_change_only_active(client: Client, many_rows: dict[str, Any]) -> None:
    staff = get_user_model().objects.create_user("erin", password="pw-erin-123", is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["alerts", "notifications"], codename__startswith="view_")
        | Permission.objects.filter(codename__in=["change_alertrule", "change_destination"])
    )
    client.force_login(staff)
    for path in CHANGELISTS[-5:]:
        assert client.get(f"/admin/{path}/").context["cl"].result_count == 0, path
    assert client.get(f"/admin/alerts/alertrule/{many_rows['rule'].pk}/change/").status_code == 302
    mine = AlertRule.objects.create(owner=staff, kind="price_cross", exchange="binance", symbol="BTCUSDT")
    assert client.get("/admin/alerts/alertrule/").context["cl"].result_count == 1
    assert client.get("/admin/alerts/alertrule/add/").status_code == 403
    assert client.get("/admin/notifications/destination/add/").status_code == 403
    # Only "active" is a form field: a posted kind or owner is ignored.
    response = client.post(
        f"/admin/alerts/alertrule/{mine.pk}/change/", {"kind": "whale", "owner": many_rows["owner"].pk}
    )
    assert response.status_code == 302
    mine.refresh_from_db()
    assert (mine.kind, mine.owner_id, mine.active) == ("price_cross", staff.pk, False)
    # The superuser sees everyone's; the outbox and alerts are read-only even for them.
    admin = get_user_model().objects.create_superuser("root-e", password="pw-root-123")
    client.force_login(admin)
    assert client.get("/admin/alerts/alertrule/").context["cl"].result_count == 2
    alert = Alert.objects.order_by("pk").first()
    assert alert is not None
    page = client.get(f"/admin/alerts/alert/{alert.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_paginator_small_and_unanalysed_tables() -> None:
    assert EstimatedCountPaginator([1, 2, 3], 2).count == 3
    assert EstimatedCountPaginator(SymbolStats.objects.order_by("pk"), 100).count == len(PAIRS)
    assert bounded_count(Trade.objects.all(), cap=10) == 11


def test_date_hierarchy_lists_years_when_data_spans_several(admin_client: Client) -> None:
    make_trades(1, exchange="kraken", symbol="BTC/USD", start=T0.replace(year=2023), first_id=1)
    html = admin_client.get("/admin/analytics/trade/").content.decode()
    assert "traded_at__year=2023" in html
    assert "traded_at__year=2024" in html
    # A filter narrows the span to that pair's trades.
    html = admin_client.get("/admin/analytics/trade/", {"exchange": "coinbase"}).content.decode()
    assert "traded_at__year=2023" not in html
    assert "traded_at__month=8" in html
    html = admin_client.get("/admin/analytics/trade/", {"exchange": "nope"}).content.decode()
    assert "traded_at__year=" not in html


def test_empty_trade_table(admin_client: Client) -> None:
    Trade.objects.all().delete()  # rolled back after the test
    response = admin_client.get("/admin/analytics/trade/")
    assert response.status_code == 200
    assert response.context["cl"].result_count == 0
    assert "traded_at__year=" not in response.content.decode()
    assert list(admin_client.get("/admin/analytics/trade/", {"q": "10042"}).context["cl"].result_list) == []
