"""Candle updates of one market that run out of order (two worker processes, or a task re-delivered after a worker
was killed) must not evaluate a closed candle before all its stored trades are in it.

Found while adding the candle kinds to the chaos check (issue 22): ``alerts.candle_kinds`` evaluated the candles an
update *closes* as stored at that moment. When the update of a later batch (a trade of minute 2) ran before the
update of an earlier batch (the last trades of minute 1), minute 1 was closed and evaluated without those trades,
and never again (``state.seen`` had passed it). Now such candles are recomputed from the stored trades first.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from alerts.models import Alert, AlertRule
from analytics.series import update_series
from analytics.storage import store_trades
from ingest.records import TradeRecord

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

T0 = 1_722_470_400_000  # a minute boundary (2024-08-01 00:00 UTC)


def trade(trade_id: int, ms: int, quantity: str) -> TradeRecord:
    return TradeRecord("binance", "BTCUSDT", trade_id, "100", quantity, False, ms, ms, ms)


def stored(trade_id: int, ms: int, quantity: str) -> int:
    """Store one trade as its own consumer batch; its window, for its update."""
    store_trades([trade(trade_id, ms, quantity)])
    return ms


def test_a_candle_closed_by_a_later_batchs_update_is_evaluated_with_all_its_trades() -> None:
    owner = get_user_model().objects.create_user("olga", password="pw-olga-12345")
    AlertRule.objects.create(
        owner=owner,
        kind="volume_spike",
        exchange="binance",
        symbol="BTCUSDT",
        params={"interval": "1m", "factor": "1", "n": 1},  # fires when a minute's volume >= the minute before's
        channels=["in_app"],
    )
    for ms in (stored(1, T0 + 1_000, "1"), stored(2, T0 + 61_000, "0.5")):  # minute 0: 1; minute 1 so far: 0.5
        update_series("binance", "BTCUSDT", ms, ms)
    late = stored(3, T0 + 62_000, "1")  # minute 1's second batch: its update runs last
    later = stored(4, T0 + 121_000, "1")  # minute 2: closes minute 1
    update_series("binance", "BTCUSDT", later, later)
    update_series("binance", "BTCUSDT", late, late)
    # Minute 1 holds 1.5 >= 1 x minute 0's volume: docs/ALERTS.md says it fires.
    assert list(Alert.objects.values_list("trigger", flat=True)) == [f"candle:1m:{T0 + 60_000}"]
    # It started at its first update with a closed candle (minute 0's), never evaluated: the record of that.
    assert AlertRule.objects.get().state["since"] == T0
