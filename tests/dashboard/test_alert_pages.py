"""The alert pages through Django's test client: sign-in required, each user's own rules (create, edit, delete),
destinations, notifications and recent alerts, errors shown at their fields."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.test import Client

from alerts.models import Alert, AlertRule
from notifications.models import Destination, Notification

pytestmark = pytest.mark.django_db
T0 = datetime(2024, 8, 9, tzinfo=UTC)
PAGES = ["/alerts/", "/alerts/recent/", "/alerts/destinations/", "/notifications/"]


@pytest.fixture
def ann() -> User:
    return get_user_model().objects.create_user("ann", password="pw-ann-123")


@pytest.fixture
def page(ann: User) -> Client:
    client = Client()
    client.force_login(ann)
    return client


def rule_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "kind": "price_cross",
        "exchange": "binance",
        "symbol": "btcusdt",
        "level": "61000",
        "direction": "up",
        "channels": ["in_app"],
        "cooldown_s": "0",
        "active": "on",
        # Another kind's fields, filled in but not chosen: left out of the rule.
        "pct": "5",
    }
    return {**form, **overrides}


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_sign_in_even_when_the_dashboard_is_open(client: Client, path: str, settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_empty_and_are_in_the_nav(page: Client, path: str) -> None:
    response = page.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/alerts/"' in html
    assert 'href="/notifications/"' in html


def test_create_a_rule_in_the_page(page: Client, ann: User) -> None:
    response = page.post("/alerts/", rule_form())
    assert response.status_code == 302
    rule = AlertRule.objects.get()
    assert (rule.owner_id, rule.kind, rule.exchange, rule.symbol) == (ann.pk, "price_cross", "binance", "BTCUSDT")
    assert rule.params == {"level": "61000", "direction": "up"}
    html = page.get("/alerts/").content.decode()
    assert f'data-rule="{rule.pk}"' in html
    assert "level=61000" in html


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"level": "abc"}, "level", "plain non-negative decimal"),
        ({"symbol": ""}, "symbol", "required"),
        ({"channels": ["in_app", "sms"]}, "channels", "no destination"),
        ({"kind": "indicator", "interval": "1m", "indicator": "ema", "period": "8"}, "period", "stored periods"),
    ],
)
def test_errors_are_shown_at_their_field(page: Client, overrides: dict[str, Any], field: str, message: str) -> None:
    response = page.post("/alerts/", rule_form(**overrides))
    assert response.status_code == 400
    assert message in str(response.context["form"].errors[field])
    assert 'class="field invalid" data-field="' + field + '"' in response.content.decode()
    assert not AlertRule.objects.exists()


def test_quota_is_shown_on_the_form(page: Client, settings: Any) -> None:
    settings.ALERTS_MAX_RULES_PER_USER = 1
    assert page.post("/alerts/", rule_form()).status_code == 302
    response = page.post("/alerts/", rule_form())
    assert response.status_code == 400
    assert "limit of 1 alert rules" in response.content.decode()
    assert AlertRule.objects.count() == 1


def test_edit_and_delete_own_rules_only(page: Client, ann: User) -> None:
    mine = AlertRule.objects.create(
        owner=ann, kind="price_cross", exchange="binance", symbol="BTCUSDT", params={"level": "1", "direction": "up"}
    )
    bob = get_user_model().objects.create_user("bob", password="pw-bob-123")
    theirs = AlertRule.objects.create(owner=bob, kind="whale")
    assert page.get(f"/alerts/{theirs.pk}/").status_code == 404
    assert page.post(f"/alerts/{theirs.pk}/", rule_form()).status_code == 404
    assert page.post(f"/alerts/{theirs.pk}/delete/").status_code == 404
    form = page.get(f"/alerts/{mine.pk}/").context["form"]
    assert (form.initial["level"], form.initial["direction"]) == ("1", "up")
    bad = page.post(f"/alerts/{mine.pk}/", rule_form(level="-1"))
    assert bad.status_code == 400
    response = page.post(f"/alerts/{mine.pk}/", rule_form(level="70000", direction="down", active=""))
    assert response.status_code == 302
    mine.refresh_from_db()
    assert (mine.params, mine.active) == ({"level": "70000", "direction": "down"}, False)
    assert page.get(f"/alerts/{mine.pk}/delete/").status_code == 405
    assert page.post(f"/alerts/{mine.pk}/delete/").status_code == 302
    assert list(AlertRule.objects.values_list("pk", flat=True)) == [theirs.pk]


def test_destinations_page_adds_validates_and_deletes(page: Client, ann: User, settings: Any) -> None:
    bad = page.post("/alerts/destinations/", {"kind": "sms", "target": "555-0123"})
    assert bad.status_code == 400
    assert "E.164" in str(bad.context["form"].errors["target"])
    ok = page.post("/alerts/destinations/", {"kind": "sms", "target": "+1 415 555 0123"})
    assert ok.status_code == 200
    assert Destination.objects.get().target == "+14155550123"
    assert "+14155550123" in ok.content.decode()
    assert "webhook-secret" not in ok.content.decode()
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = True
    hook = page.post(
        "/alerts/destinations/", {"kind": "webhook", "target": "http://127.0.0.1:9/h", "format": "generic"}
    )
    secret = Destination.objects.get(kind="webhook").secret
    assert secret
    assert secret in hook.content.decode()
    assert secret not in page.get("/alerts/destinations/").content.decode()  # shown once
    bob = get_user_model().objects.create_user("bob", password="pw-bob-123")
    theirs = Destination.objects.create(owner=bob, kind="email", target="b@example.com")
    assert page.post(f"/alerts/destinations/{theirs.pk}/delete/").status_code == 404
    sms = Destination.objects.get(owner=ann, kind="sms")
    assert page.post(f"/alerts/destinations/{sms.pk}/delete/").status_code == 302
    assert not Destination.objects.filter(pk=sms.pk).exists()


def test_notifications_and_recent_alerts_show_own_only(page: Client, ann: User) -> None:
    bob = get_user_model().objects.create_user("bob", password="pw-bob-123")
    Notification.objects.create(owner=ann, key="n1", subject="BTCUSDT crossed 61000", body="up")
    Notification.objects.create(owner=bob, key="n2", subject="theirs", body="x")
    html = page.get("/notifications/").content.decode()
    assert "BTCUSDT crossed 61000" in html
    assert "theirs" not in html
    assert "1 unread" in html
    assert page.post("/notifications/").status_code == 302
    assert not Notification.objects.filter(owner=ann, read_at__isnull=True).exists()
    assert Notification.objects.filter(owner=bob, read_at__isnull=True).exists()
    for owner, text in ((ann, "mine fired"), (bob, "their alert")):
        rule = AlertRule.objects.create(owner=owner, kind="price_cross", exchange="binance", symbol="BTCUSDT")
        Alert.objects.create(
            rule=rule,
            kind="price_cross",
            exchange="binance",
            symbol="BTCUSDT",
            trigger="trade:1",
            trade_id=1,
            price=Decimal("61000"),
            traded_at=T0,
            message=text,
        )
    html = page.get("/alerts/recent/").content.decode()
    assert "mine fired" in html
    assert "their alert" not in html
