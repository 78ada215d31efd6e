"""What a store transaction announces (analytics.signals.trades_stored): exactly the rows it inserted, per market
in trade-id order, with the prices and quantities both as stored decimal text and as the doubles ``float()`` gives."""

from __future__ import annotations

from typing import Any

import pytest

from analytics.signals import trades_stored, trades_storing
from analytics.storage import StoredTrades, store_trades
from tests.analytics.test_consumer import real_trades

pytestmark = pytest.mark.django_db


def test_the_announced_rows_are_the_inserted_ones_in_trade_id_order_with_exact_doubles() -> None:
    seen: list[StoredTrades] = []

    def wants(**_: Any) -> bool:
        return True

    def record(markets: list[StoredTrades], **_: Any) -> None:
        seen.extend(markets)

    trades = real_trades(400)
    trades_storing.connect(wants, dispatch_uid="test-wants")
    trades_stored.connect(record, dispatch_uid="test-record")
    try:
        store_trades(trades[:150])
        result = store_trades(list(reversed(trades)), announce=True)  # 150 replayed, 250 new, in reverse order
    finally:
        trades_storing.disconnect(dispatch_uid="test-wants")
        trades_stored.disconnect(dispatch_uid="test-record")
    assert result.inserted == 250
    (market,) = seen
    new = sorted(trades[150:], key=lambda t: t.trade_id)
    assert market.trade_ids == [t.trade_id for t in new]
    assert [float(p) for p in market.prices] == [float(t.price) for t in new]
    assert market.price_floats == [float(p) for p in market.prices]
    assert market.quantity_floats == [float(q) for q in market.quantities]
    assert market.times_ms == [t.trade_time for t in new]
