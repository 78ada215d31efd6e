"""Alerts through the real consumer path (Kafka -> TradeConsumer -> PostgreSQL): stored with the trades, exactly
once, also when every record is delivered twice."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from alerts import wiring
from alerts.models import Alert, AlertRule
from analytics.consumer import ConsumerConfig
from analytics.models import Trade
from notifications.models import Delivery
from tests.alerts.test_trade_kinds import brute_cross
from tests.analytics.test_consumer import Runner, fully_committed, produce_trades, real_trades
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_the_consumer_stores_alerts_with_the_trades_exactly_once(kafka_topics):
    wiring._book = wiring.RuleBook()
    trades = real_trades(4000)
    assert [t.trade_id for t in trades] == sorted(t.trade_id for t in trades)  # one partition: stored in this order
    owner = get_user_model().objects.create_user("bob", password="pw-bob-12345")
    level = str(sorted(Decimal(t.price) for t in trades)[len(trades) // 2])
    rule = AlertRule.objects.create(
        owner=owner,
        kind="price_cross",
        exchange="binance",
        symbol="BTCUSDT",
        params={"level": level, "direction": "both"},
        channels=["in_app"],
    )
    expected = brute_cross(trades, level, "both")
    assert len(expected) > 5
    produce_trades(trades)
    produce_trades(trades)  # every record twice: the copies insert nothing, so fire nothing
    with Runner(ConsumerConfig(batch_size=300, batch_ms=50)) as runner:
        wait_for(fully_committed, what="offsets committed to the end")
        wait_for(lambda: runner.consumer.metrics.consumed == 2 * len(trades), what="both copies consumed")
    assert runner.error is None
    assert Trade.objects.count() == len(trades)
    fired = sorted(i for i in Alert.objects.filter(rule=rule).values_list("trade_id", flat=True) if i is not None)
    assert fired == expected
    assert Delivery.objects.count() == len(expected)  # one in-app delivery per alert
    alert = Alert.objects.filter(rule=rule).order_by("trade_id").first()
    assert alert is not None
    assert alert.trade_id is not None
    stored = Trade.objects.get(trade_id=alert.trade_id)
    assert (alert.price, alert.traded_at) == (stored.price, stored.traded_at)
