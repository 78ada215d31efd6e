"""Migration of today's whale subscriptions and deliveries (dashboard 0002, 0003) both ways, with data, through
Django's MigrationExecutor on the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from alerts.models import Alert, AlertRule
from analytics.models import WhaleAlert
from notifications.models import Delivery, Destination

BEFORE = [("dashboard", "0001_initial")]
AFTER = [("dashboard", "0003_remove_whale_subscriptions")]
T0 = datetime(2024, 8, 9, 0, 0, 55, tzinfo=UTC)


def migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def table_exists(name: str) -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", [name])
        return cur.fetchone()[0] is not None


def whale(trade_id: int, price: str, quantity: str, side: str = "buy") -> WhaleAlert:
    return WhaleAlert.objects.create(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id=trade_id,
        price=Decimal(price),
        quantity=Decimal(quantity),
        notional=Decimal(price) * Decimal(quantity),
        side=side,
        traded_at=T0 + timedelta(seconds=trade_id),
    )


@pytest.mark.django_db(transaction=True)
def test_subscriptions_and_deliveries_migrate_forwards_and_back() -> None:
    old = migrate(BEFORE)
    try:
        assert table_exists("dashboard_alertsubscription")
        users = get_user_model().objects
        ann, ben = users.create_user("ann", password="pw-ann-123"), users.create_user("ben", password="pw-ben-123")
        w1, w2 = whale(101, "61837.63", "12.5"), whale(102, "62000", "5", side="sell")
        sub_model = old.get_model("dashboard", "AlertSubscription")
        delivery_model = old.get_model("dashboard", "AlertDelivery")
        created = datetime(2024, 8, 1, tzinfo=UTC)
        slack = sub_model.objects.create(
            user_id=ann.pk,
            symbol="BTCUSDT",
            min_notional=Decimal("250000"),
            channel="webhook",
            target="https://hooks.slack.com/services/T0/B0/secret",
            format="slack",
            created_at=created,
        )
        mail = sub_model.objects.create(user_id=ann.pk, channel="email", target="ann@example.com", active=False)
        generic = sub_model.objects.create(
            user_id=ben.pk, exchange="binance", channel="webhook", target="https://example.com/h", format="generic"
        )
        sent_at = T0 + timedelta(minutes=1)
        delivery_model.objects.create(alert_id=w1.pk, subscription=slack, status="sent", attempts=1, sent_at=sent_at)
        delivery_model.objects.create(
            alert_id=w2.pk, subscription=slack, status="failed", attempts=3, last_error="failed: HTTP 500"
        )
        delivery_model.objects.create(alert_id=w1.pk, subscription=generic, status="pending", attempts=2)
        delivery_model.objects.create(alert_id=w2.pk, subscription=mail, status="pending")

        # ------------------------------------------------------------------ forwards
        migrate(AFTER)
        assert not table_exists("dashboard_alertsubscription")
        assert not table_exists("dashboard_alertdelivery")
        rules = {r.destinations.get().target: r for r in AlertRule.objects.prefetch_related("destinations")}
        assert len(rules) == AlertRule.objects.count() == 3
        r_slack, r_mail, r_generic = (rules[t] for t in (slack.target, mail.target, generic.target))
        assert (r_slack.owner_id, r_slack.kind, r_slack.exchange, r_slack.symbol) == (ann.pk, "whale", "", "BTCUSDT")
        assert (r_slack.params, r_slack.channels, r_slack.active) == ({"min_notional": "250000"}, ["webhook"], True)
        assert r_slack.created_at == created
        assert (r_mail.params, r_mail.channels, r_mail.active) == ({"min_notional": "0"}, ["email"], False)
        assert (r_generic.owner_id, r_generic.exchange, r_generic.symbol) == (ben.pk, "binance", "")
        d_slack = r_slack.destinations.get()
        assert (d_slack.kind, d_slack.format, d_slack.secret) == ("webhook", "slack", "")
        d_generic = r_generic.destinations.get()
        assert (d_generic.format, len(d_generic.secret) >= 32) == ("generic", True)
        assert r_mail.destinations.get().kind == "email"

        alerts = {(a.rule_id, a.trade_id): a for a in Alert.objects.all()}
        assert set(alerts) == {(r_slack.pk, 101), (r_slack.pk, 102), (r_generic.pk, 101), (r_mail.pk, 102)}
        first = alerts[(r_slack.pk, 101)]
        assert (first.kind, first.exchange, first.symbol, first.trigger) == ("whale", "binance", "BTCUSDT", "trade:101")
        assert (first.price, first.traded_at) == (Decimal("61837.63"), w1.traded_at)
        assert first.message == "Whale BUY 12.5 BTCUSDT @ 61837.63 on binance = 772,970 (2024-08-09 00:02:36 UTC)"
        assert first.fired_at == w1.created_at

        outbox = {d.key: d for d in Delivery.objects.all()}
        assert len(outbox) == 4
        expected = {
            (r_slack.pk, 101): ("sent", 1, "", sent_at),
            (r_slack.pk, 102): ("dead", 3, "failed: HTTP 500", None),
            (r_generic.pk, 101): ("pending", 2, "", None),
            (r_mail.pk, 102): ("pending", 0, "", None),
        }
        for (rule_id, trade_id), (status, attempts, error, when) in expected.items():
            alert = alerts[(rule_id, trade_id)]
            destination = AlertRule.objects.get(pk=rule_id).destinations.get()
            row = outbox[f"alert:{alert.pk}:{destination.pk}"]
            assert (row.status, row.attempts, row.last_error, row.sent_at) == (status, attempts, error, when)
            assert (row.kind, row.body) == (destination.kind, alert.message)

        # A rule the old model cannot express stays when going back.
        sms = Destination.objects.create(owner=ann, kind="sms", target="+14155550123")
        kept = AlertRule.objects.create(owner=ann, kind="whale", channels=["sms"])
        kept.destinations.set([sms])

        # ------------------------------------------------------------------ backwards
        old = migrate(BEFORE)
        sub_model = old.get_model("dashboard", "AlertSubscription")
        delivery_model = old.get_model("dashboard", "AlertDelivery")
        subs = {s.target: s for s in sub_model.objects.all()}
        assert set(subs) == {slack.target, mail.target, generic.target}
        for before in (slack, mail, generic):
            after = subs[before.target]
            fields = ("user_id", "exchange", "symbol", "min_notional", "channel", "active")
            assert [getattr(after, f) for f in fields] == [getattr(before, f) for f in fields], before.target
        assert subs[slack.target].format == "slack"
        assert subs[generic.target].format == "generic"
        assert subs[slack.target].created_at == created
        rows = {
            (d.alert_id, d.subscription.target): (d.status, d.attempts, d.last_error, d.sent_at)
            for d in delivery_model.objects.select_related("subscription")
        }
        assert rows == {
            (w1.pk, slack.target): ("sent", 1, "", sent_at),
            (w2.pk, slack.target): ("failed", 3, "failed: HTTP 500", None),
            (w1.pk, generic.target): ("pending", 2, "", None),
            (w2.pk, mail.target): ("pending", 0, "", None),
        }
        assert list(AlertRule.objects.values_list("pk", flat=True)) == [kept.pk]
        assert not Alert.objects.exists()
        assert not Delivery.objects.exists()

        # ------------------------------------------------------------------ and forwards again: the same rules
        migrate(AFTER)
        assert AlertRule.objects.count() == 4
        assert Alert.objects.count() == Delivery.objects.count() == 4
        assert Destination.objects.count() == 4  # reused, not duplicated
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
