"""A late, older trade (a backfilled gap) in the first batch a consumer stores after a start (found by the chaos
work on issue 22).

docs/ALERTS.md: a rule sees the trades newly stored, batch after batch; a trade stamped earlier than one seen before
it counts at that one's time, and a ``pct_move`` window is the trades seen before it within ``window_s``. In memory
the evaluator does exactly that. After a start or a reload the window is rebuilt from the stored trades
(``alerts.wiring._stored_window``): it once took those with a lower trade id than the batch's first, traded up to
the batch's last time, so trades seen earlier but with higher ids dropped out and the same stream fired differently
(this test, after a start, failed). It now takes every trade stored before the batch, in the order they were stored.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from alerts import wiring
from alerts.models import Alert, AlertRule
from analytics.storage import store_trades
from ingest.records import TradeRecord

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

T0 = 1_723_161_255_000


def _trade(trade_id: int, price: str, second: int) -> TradeRecord:
    ms = T0 + second * 1000
    return TradeRecord("binance", "BTCUSDT", trade_id, price, "1", False, ms, ms, ms)


@pytest.mark.parametrize("restart", [False, True], ids=["in-memory", "after-a-start"])
def test_a_late_trade_fires_as_documented(restart: bool) -> None:
    wiring._book = wiring.RuleBook()
    owner = get_user_model().objects.create_user("eve", password="pw-eve-12345")
    rule = AlertRule.objects.create(
        owner=owner,
        kind="pct_move",
        exchange="binance",
        symbol="BTCUSDT",
        params={"pct": "1", "window_s": 10, "direction": "up"},
        channels=["in_app"],
    )
    store_trades([_trade(10, "100", 0), _trade(12, "99", 2)], announce=True)
    if restart:
        wiring._book = wiring.RuleBook()  # a consumer process that just started: nothing in memory
    store_trades([_trade(11, "100", 1)], announce=True)  # the backfilled gap, stored after trade 12
    # Trade 11 is seen after 10 and 12 (counted at 12's time): its window {10, 12} has the low 99, and
    # 100 x 100 >= 101 x 99, so the up move starts on it.
    assert list(Alert.objects.filter(rule=rule).values_list("trade_id", flat=True)) == [11]
