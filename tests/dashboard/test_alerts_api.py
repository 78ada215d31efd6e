"""The alerts API against the real PostgreSQL: rules (validation per kind naming the parameter, ownership 404,
quota 429), alerts (keyset pagination, own only), destinations (E.164, SSRF guard, secret shown once) and in-app
notifications."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token

from alerts.models import Alert, AlertRule
from cryptoproject.timeutil import datetime_to_ms
from dashboard.api import serializers as s
from notifications.models import Destination, Notification
from tests.dashboard.api_factories import T0, locmem_cache

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("locmem_cache")]
__all__ = ["locmem_cache"]

PRICE_RULE = {
    "kind": "price_cross",
    "exchange": "binance",
    "symbol": "btcusdt",
    "params": {"level": "61000.50", "direction": "up"},
    "channels": ["in_app"],
    "cooldown_s": 0,
}


def make_user(name: str) -> User:
    return get_user_model().objects.create_user(name, password="pw-" + name)


@pytest.fixture
def alice() -> User:
    return make_user("alice")


@pytest.fixture
def bob() -> User:
    return make_user("bob")


@pytest.fixture
def api(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def post(client: Client, path: str, body: Any) -> Any:
    return client.post(f"/api/v1/{path}", body, content_type="application/json")


def patch(client: Client, path: str, body: Any) -> Any:
    return client.patch(f"/api/v1/{path}", body, content_type="application/json")


def assert_param_error(response: Any, param: str) -> None:
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param, response.json()


def with_params(kind: str, exchange: str = "binance", symbol: str = "BTCUSDT", **params: Any) -> dict[str, Any]:
    return {"kind": kind, "exchange": exchange, "symbol": symbol, "params": params, "channels": ["in_app"]}


# --------------------------------------------------------------------------------------------- rules: create
def test_create_answers_201_with_the_normalised_rule(api: Client, alice: User) -> None:
    response = post(api, "alert-rules", PRICE_RULE)
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == set(s.AlertRuleSerializer().fields)
    assert body["kind"] == "price_cross"
    assert (body["exchange"], body["symbol"]) == ("binance", "BTCUSDT")
    assert body["params"] == {"level": "61000.5", "direction": "up"}
    assert body["channels"] == ["in_app"]
    assert body["active"] is True
    rule = AlertRule.objects.get(pk=body["id"])
    assert rule.owner_id == alice.pk
    assert rule.params == {"level": "61000.5", "direction": "up"}


@pytest.mark.parametrize(
    ("body", "params"),
    [
        (with_params("price_cross", level="100"), {"level": "100", "direction": "both"}),
        (with_params("pct_move", pct="2.5", window_s=60), {"pct": "2.5", "window_s": 60, "direction": "both"}),
        (
            with_params("indicator", interval="1m", indicator="rsi", level="70", direction="up"),
            {"interval": "1m", "indicator": "rsi", "level": "70", "direction": "up"},
        ),
        (
            with_params("indicator", interval="5m", indicator="sma", period=25),
            {"interval": "5m", "indicator": "sma", "period": 25, "direction": "both"},
        ),
        (
            with_params("indicator", interval="1h", indicator="bollinger", direction="down"),
            {"interval": "1h", "indicator": "bollinger", "direction": "down"},
        ),
        (with_params("volume_spike", interval="1m", factor="3", n=20), {"interval": "1m", "factor": "3", "n": 20}),
        (with_params("whale", exchange="", symbol="", min_notional="250000"), {"min_notional": "250000"}),
        (with_params("whale", exchange="kraken", symbol="BTC/USD"), {}),
    ],
)
def test_every_kind_is_accepted(api: Client, body: dict[str, Any], params: dict[str, Any]) -> None:
    response = post(api, "alert-rules", body)
    assert response.status_code == 201, response.content
    assert response.json()["params"] == params


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"kind": "moon"}, "kind"),
        ({"kind": None}, "kind"),
        ({"exchange": "mtgox"}, "exchange"),
        ({"exchange": ""}, "exchange"),
        ({"exchange": 5}, "exchange"),
        ({"symbol": ""}, "symbol"),
        ({"symbol": "BTC USDT"}, "symbol"),
        ({"symbol": ["BTC"]}, "symbol"),
        ({"params": []}, "params"),
        ({"params": {"direction": "up"}}, "params.level"),
        ({"params": {"level": "-5"}}, "params.level"),
        ({"params": {"level": 61000.5}}, "params.level"),
        ({"params": {"level": "0"}}, "params.level"),
        ({"params": {"level": "1e5"}}, "params.level"),
        ({"params": {"level": "100", "direction": "sideways"}}, "params.direction"),
        ({"params": {"level": "100", "levle": "1"}}, "params.levle"),
        ({"channels": []}, "channels"),
        ({"channels": "in_app"}, "channels"),
        ({"channels": ["pigeon"]}, "channels"),
        ({"channels": ["in_app", "sms"]}, "channels"),  # no SMS destination yet
        ({"cooldown_s": -1}, "cooldown_s"),
        ({"cooldown_s": True}, "cooldown_s"),
        ({"cooldown_s": 10**9}, "cooldown_s"),
        ({"destinations": "x"}, "destinations"),
        ({"destinations": [999999]}, "destinations"),
        ({"active": "yes"}, "active"),
        ({"owner": 1}, "owner"),
    ],
)
def test_price_cross_validation_names_the_param(api: Client, change: dict[str, Any], param: str) -> None:
    assert_param_error(post(api, "alert-rules", {**PRICE_RULE, **change}), param)
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (with_params("pct_move", window_s=60), "params.pct"),
        (with_params("pct_move", pct="2000", window_s=60), "params.pct"),
        (with_params("pct_move", pct="2", window_s=0), "params.window_s"),
        (with_params("pct_move", pct="2", window_s="ten"), "params.window_s"),
        (with_params("pct_move", pct="2", window_s=[1]), "params.window_s"),
        (with_params("pct_move", pct="2", window_s=60, direction="x"), "params.direction"),
        (with_params("indicator", indicator="rsi", level="70"), "params.interval"),
        (with_params("indicator", interval="2m", indicator="rsi", level="70"), "params.interval"),
        (with_params("indicator", interval="1m", indicator="stoch"), "params.indicator"),
        (with_params("indicator", interval="1m", indicator="rsi"), "params.level"),
        (with_params("indicator", interval="1m", indicator="rsi", level="101"), "params.level"),
        (with_params("indicator", interval="1m", indicator="ema"), "params.period"),
        (with_params("indicator", interval="1m", indicator="ema", period=8), "params.period"),
        (with_params("indicator", interval="1m", indicator="macd", direction="left"), "params.direction"),
        (with_params("volume_spike", interval="1m", n=20), "params.factor"),
        (with_params("volume_spike", interval="1m", factor="3"), "params.n"),
        (with_params("volume_spike", interval="1m", factor="3", n=0), "params.n"),
        (with_params("volume_spike", factor="3", n=5), "params.interval"),
        (with_params("whale", min_notional="lots"), "params.min_notional"),
        (with_params("whale", level="5"), "params.level"),
        (with_params("price_cross", exchange="", symbol="", level="5"), "exchange"),
        (with_params("pct_move", symbol="", pct="1", window_s=5), "symbol"),
    ],
)
def test_validation_per_kind_names_the_param(api: Client, body: dict[str, Any], param: str) -> None:
    assert_param_error(post(api, "alert-rules", body), param)


def test_a_body_that_is_not_an_object_is_a_400(api: Client) -> None:
    assert_param_error(post(api, "alert-rules", [PRICE_RULE]), "body")


def test_channels_need_a_destination_except_in_app(api: Client, alice: User) -> None:
    body = {**PRICE_RULE, "channels": ["in_app", "email"]}
    response = post(api, "alert-rules", body)
    assert_param_error(response, "channels")
    assert "email" in response.json()["error"]["message"]
    email = Destination.objects.create(owner=alice, kind="email", target="a@example.com")
    response = post(api, "alert-rules", body)
    assert response.status_code == 201, response.content
    # Only chosen destinations: one on another channel is refused, the right one is kept.
    sms = Destination.objects.create(owner=alice, kind="sms", target="+14155550123")
    assert_param_error(post(api, "alert-rules", {**body, "destinations": [sms.pk]}), "destinations")
    response = post(api, "alert-rules", {**body, "destinations": [email.pk]})
    assert response.status_code == 201
    assert response.json()["destinations"] == [email.pk]


def test_someone_elses_destination_cannot_be_chosen(api: Client, bob: User) -> None:
    theirs = Destination.objects.create(owner=bob, kind="email", target="b@example.com")
    body = {**PRICE_RULE, "channels": ["email"], "destinations": [theirs.pk]}
    assert_param_error(post(api, "alert-rules", body), "destinations")


def test_quota_answers_429_with_a_json_error(api: Client, settings: Any) -> None:
    settings.ALERTS_MAX_RULES_PER_USER = 2
    for _ in range(2):
        assert post(api, "alert-rules", PRICE_RULE).status_code == 201
    response = post(api, "alert-rules", PRICE_RULE)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert "2" in response.json()["error"]["message"]
    assert AlertRule.objects.count() == 2
    # Another user's quota is their own.
    other = Client()
    other.force_login(make_user("carol"))
    assert post(other, "alert-rules", PRICE_RULE).status_code == 201


# --------------------------------------------------------------------------------------------- rules: auth, owner
def test_anonymous_is_401_even_when_the_dashboard_is_open(client: Client, settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    for path in ("alert-rules", "alerts", "destinations", "notifications"):
        response = client.get(f"/api/v1/{path}")
        assert response.status_code == 401, path
        assert response["WWW-Authenticate"] == "Token"
    assert post(client, "alert-rules", PRICE_RULE).status_code == 401


def test_session_post_without_csrf_is_403(alice: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = post(client, "alert-rules", PRICE_RULE)
    assert response.status_code == 403
    assert response.json()["error"]["message"]
    assert not AlertRule.objects.exists()


def test_token_clients_need_no_csrf(alice: User) -> None:
    key = Token.objects.create(user=alice).key
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/v1/alert-rules", PRICE_RULE, content_type="application/json", HTTP_AUTHORIZATION=f"Token {key}"
    )
    assert response.status_code == 201


def test_only_the_owner_sees_or_changes_a_rule(api: Client, bob: User) -> None:
    rule_id = post(api, "alert-rules", PRICE_RULE).json()["id"]
    other = Client()
    other.force_login(bob)
    assert other.get(f"/api/v1/alert-rules/{rule_id}").status_code == 404
    assert patch(other, f"alert-rules/{rule_id}", {"active": False}).status_code == 404
    assert other.delete(f"/api/v1/alert-rules/{rule_id}").status_code == 404
    assert other.get("/api/v1/alert-rules").json() == {"results": []}
    assert other.get("/api/v1/alerts", {"rule": rule_id}).status_code == 404
    assert AlertRule.objects.get(pk=rule_id).active is True
    # The owner does.
    assert api.get(f"/api/v1/alert-rules/{rule_id}").json()["id"] == rule_id
    assert [r["id"] for r in api.get("/api/v1/alert-rules").json()["results"]] == [rule_id]
    assert api.get("/api/v1/alert-rules/999999").status_code == 404


def test_patch_revalidates_and_resets_the_state(api: Client) -> None:
    rule_id = post(api, "alert-rules", PRICE_RULE).json()["id"]
    AlertRule.objects.filter(pk=rule_id).update(state={"last": "60000"}, last_fired_ms=5)
    response = patch(api, f"alert-rules/{rule_id}", {"active": False, "cooldown_s": 60})
    assert response.status_code == 200
    assert (response.json()["active"], response.json()["cooldown_s"]) == (False, 60)
    assert AlertRule.objects.get(pk=rule_id).state == {"last": "60000"}  # same market and level: state kept
    assert_param_error(patch(api, f"alert-rules/{rule_id}", {"params": {"level": "x"}}), "params.level")
    response = patch(api, f"alert-rules/{rule_id}", {"params": {"level": "70000", "direction": "down"}})
    assert response.json()["params"] == {"level": "70000", "direction": "down"}
    rule = AlertRule.objects.get(pk=rule_id)
    assert (rule.state, rule.last_fired_ms) == ({}, None)
    # Another kind needs its own parameters; the old ones are not carried over.
    assert_param_error(patch(api, f"alert-rules/{rule_id}", {"kind": "pct_move"}), "params.pct")
    response = patch(api, f"alert-rules/{rule_id}", {"kind": "whale", "exchange": "", "symbol": ""})
    assert response.status_code == 200
    assert response.json()["params"] == {}


def test_patch_keeps_destinations_on_remaining_channels(api: Client, alice: User) -> None:
    email = Destination.objects.create(owner=alice, kind="email", target="a@example.com")
    body = {**PRICE_RULE, "channels": ["email", "in_app"], "destinations": [email.pk]}
    rule_id = post(api, "alert-rules", body).json()["id"]
    assert patch(api, f"alert-rules/{rule_id}", {"cooldown_s": 5}).json()["destinations"] == [email.pk]
    assert patch(api, f"alert-rules/{rule_id}", {"channels": ["in_app"]}).json()["destinations"] == []
    assert patch(api, f"alert-rules/{rule_id}", {"destinations": None}).json()["destinations"] == []


def test_delete_removes_the_rule_and_its_alerts(api: Client) -> None:
    rule_id = post(api, "alert-rules", PRICE_RULE).json()["id"]
    make_alerts(AlertRule.objects.get(pk=rule_id), 2)
    assert api.delete(f"/api/v1/alert-rules/{rule_id}").status_code == 204
    assert not AlertRule.objects.exists()
    assert not Alert.objects.exists()
    assert api.delete(f"/api/v1/alert-rules/{rule_id}").status_code == 404


# --------------------------------------------------------------------------------------------- alerts
def make_alerts(rule: AlertRule, n: int, same_time: bool = False) -> list[Alert]:
    rows = [
        Alert(
            rule=rule,
            kind=rule.kind,
            exchange="binance",
            symbol="BTCUSDT",
            trigger=f"trade:{i}",
            trade_id=i,
            price=Decimal("61000.50"),
            traded_at=T0 + timedelta(seconds=i),
            fired_at=T0 + timedelta(seconds=0 if same_time else i),
            message=f"BTCUSDT crossed 61000.5 ({i})",
        )
        for i in range(1, n + 1)
    ]
    return Alert.objects.bulk_create(rows)


def test_alerts_shape_newest_first(api: Client, alice: User) -> None:
    rule = AlertRule.objects.create(owner=alice, kind="price_cross", exchange="binance", symbol="BTCUSDT")
    make_alerts(rule, 3)
    candle = Alert.objects.create(
        rule=rule,
        kind="volume_spike",
        exchange="binance",
        symbol="BTCUSDT",
        trigger="candle:1m:1",
        traded_at=T0 + timedelta(minutes=5),
        fired_at=T0 + timedelta(minutes=5),
        message="volume",
    )
    body = api.get("/api/v1/alerts").json()
    assert (body["next"], body["cursor"]) == (None, None)
    items = body["results"]
    assert [i["id"] for i in items] == [candle.pk, *sorted(a.pk for a in rule.alerts.exclude(pk=candle.pk))[::-1]]
    fields = {"id", "rule", "kind", "exchange", "symbol", "trade_id", "price", "traded_at", "t", "fired_at", "message"}
    assert set(items[0]) == fields
    assert set(items[0]) == set(s.AlertSerializer().fields)
    assert (items[0]["trade_id"], items[0]["price"]) == (None, None)
    last = items[-1]
    assert (last["rule"], last["kind"], last["trade_id"], last["price"]) == (rule.pk, "price_cross", 1, "61000.5")
    assert last["t"] == datetime_to_ms(T0 + timedelta(seconds=1))
    assert last["traded_at"] == (T0 + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    assert last["message"] == "BTCUSDT crossed 61000.5 (1)"


def test_alerts_keyset_pages_walk_every_alert_once(api: Client, alice: User) -> None:
    rule = AlertRule.objects.create(owner=alice, kind="price_cross", exchange="binance", symbol="BTCUSDT")
    other = AlertRule.objects.create(owner=alice, kind="price_cross", exchange="binance", symbol="ETHUSDT")
    made = make_alerts(rule, 25, same_time=True)  # one fired_at: the tie-breaker on id matters
    make_alerts(other, 3)
    seen: list[int] = []
    url: str | None = f"/api/v1/alerts?rule={rule.pk}&limit=10"
    pages = 0
    while url:
        body = api.get(url).json()
        seen += [i["id"] for i in body["results"]]
        assert {i["rule"] for i in body["results"]} == {rule.pk}
        url = body["next"]
        pages += 1
        if url:
            assert body["cursor"] in url
    assert pages == 3
    assert seen == sorted((a.pk for a in made), reverse=True)


def test_alerts_are_own_only_and_params_are_checked(api: Client, bob: User) -> None:
    theirs = AlertRule.objects.create(owner=bob, kind="price_cross", exchange="binance", symbol="BTCUSDT")
    make_alerts(theirs, 2)
    assert api.get("/api/v1/alerts").json()["results"] == []
    assert api.get("/api/v1/alerts", {"rule": theirs.pk}).status_code == 404
    assert_param_error(api.get("/api/v1/alerts", {"rule": "²"}), "rule")
    assert_param_error(api.get("/api/v1/alerts", {"limit": "0"}), "limit")
    assert_param_error(api.get("/api/v1/alerts", {"cursor": "!!"}), "cursor")


# --------------------------------------------------------------------------------------------- destinations
@pytest.mark.parametrize(
    ("body", "target"),
    [
        ({"kind": "email", "target": " a@example.com "}, "a@example.com"),
        ({"kind": "sms", "target": "+44 20 7946 0958"}, "+442079460958"),
        ({"kind": "telegram", "target": "-1001234567890"}, "-1001234567890"),
        ({"kind": "telegram", "target": "@cryptopulse_alerts"}, "@cryptopulse_alerts"),
        ({"kind": "in_app"}, ""),
    ],
)
def test_destinations_are_validated_and_normalised(api: Client, body: dict[str, Any], target: str) -> None:
    response = post(api, "destinations", body)
    assert response.status_code == 201, response.content
    assert response.json()["target"] == target
    assert "secret" not in response.json()
    assert [d["id"] for d in api.get("/api/v1/destinations").json()["results"]] == [response.json()["id"]]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"kind": "fax", "target": "1"}, "kind"),
        ({"kind": "email", "target": "not-an-address"}, "target"),
        ({"kind": "email"}, "target"),
        ({"kind": "email", "target": 5}, "target"),
        ({"kind": "sms", "target": "4155550123"}, "target"),  # not E.164
        ({"kind": "sms", "target": "+1415"}, "target"),
        ({"kind": "sms", "target": "+1 abc"}, "target"),
        ({"kind": "telegram", "target": "chat one"}, "target"),
        ({"kind": "in_app", "target": "x"}, "target"),
        ({"kind": "webhook", "target": "ftp://example.com/x"}, "target"),
        ({"kind": "webhook", "target": "http://127.0.0.1/hook"}, "target"),  # the SSRF guard
        ({"kind": "webhook", "target": "https://hooks.example.com/x", "format": "teams"}, "format"),
    ],
)
def test_bad_destinations_name_the_param(api: Client, body: dict[str, Any], param: str, settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = False
    assert_param_error(post(api, "destinations", body), param)
    assert not Destination.objects.exists()


def test_generic_webhook_secret_is_shown_once(api: Client, settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = True  # a local receiver; the guard's refusals are tested above
    response = post(api, "destinations", {"kind": "webhook", "target": "http://127.0.0.1:8099/hook"})
    assert response.status_code == 201, response.content
    secret = response.json()["secret"]
    assert len(secret) >= 32
    assert Destination.objects.get().secret == secret
    listed = api.get("/api/v1/destinations").json()["results"][0]
    assert "secret" not in listed
    assert listed["has_secret"] is True
    slack = post(api, "destinations", {"kind": "webhook", "target": "http://127.0.0.1:8099/s", "format": "slack"})
    assert "secret" not in slack.json()
    assert slack.json()["format"] == "slack"
    # The same destination twice is a 400 naming target.
    assert_param_error(post(api, "destinations", {"kind": "webhook", "target": "http://127.0.0.1:8099/hook"}), "target")


def test_destination_delete_is_owner_only(api: Client, alice: User, bob: User) -> None:
    mine = Destination.objects.create(owner=alice, kind="email", target="a@example.com")
    theirs = Destination.objects.create(owner=bob, kind="email", target="b@example.com")
    assert api.delete(f"/api/v1/destinations/{theirs.pk}").status_code == 404
    assert api.delete(f"/api/v1/destinations/{mine.pk}").status_code == 204
    assert list(Destination.objects.values_list("pk", flat=True)) == [theirs.pk]
    assert api.get("/api/v1/destinations").json()["results"] == []


# --------------------------------------------------------------------------------------------- notifications
def test_notifications_own_newest_first_and_mark_read(api: Client, alice: User, bob: User) -> None:
    mine = [Notification.objects.create(owner=alice, key=f"a{i}", subject=f"s{i}", body="b") for i in range(3)]
    theirs = Notification.objects.create(owner=bob, key="b0", subject="theirs", body="b")
    body = api.get("/api/v1/notifications").json()
    assert [n["id"] for n in body["results"]] == [n.pk for n in reversed(mine)]
    assert body["unread"] == 3
    assert set(body["results"][0]) == {"id", "subject", "body", "created_at", "read_at"}
    page = api.get("/api/v1/notifications", {"limit": 2}).json()
    assert len(page["results"]) == 2
    assert [n["id"] for n in api.get(page["next"]).json()["results"]] == [mine[0].pk]
    # Marking someone else's is a no-op.
    assert post(api, "notifications/read", {"ids": [mine[0].pk, theirs.pk]}).json() == {"updated": 1}
    assert Notification.objects.get(pk=theirs.pk).read_at is None
    assert [n["id"] for n in api.get("/api/v1/notifications", {"unread": "true"}).json()["results"]] == [
        mine[2].pk,
        mine[1].pk,
    ]
    assert post(api, "notifications/read", {}).json() == {"updated": 2}
    assert api.get("/api/v1/notifications").json()["unread"] == 0
    assert_param_error(post(api, "notifications/read", {"ids": "all"}), "ids")
    assert_param_error(api.get("/api/v1/notifications", {"unread": "maybe"}), "unread")
