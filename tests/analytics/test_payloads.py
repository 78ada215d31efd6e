"""One wire shape per concept: the live tape's trade (built from the record, before it is read back) is the API's
item of the stored row, decimals rounded as PostgreSQL rounds them into the columns."""

from __future__ import annotations

import pytest

from analytics.models import Trade
from analytics.payloads import trade_item, trade_item_from_record
from analytics.storage import store_trades
from ingest.records import make_trade

BASE_MS = 1_723_161_255_342

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("price", "quantity"),
    [
        ("61837.63000000", "0.00123000"),  # the exchange's padded text
        ("1E+3", "2"),  # an exponent spelling
        ("0.0000000000025", "3.0000000000015"),  # past 12 places: a tie, rounded half away from zero
        ("99999999.999999999999", "7.123456789012"),  # a product longer than the default 28 digits
    ],
)
def test_tape_trade_is_the_api_item_of_the_stored_row(price: str, quantity: str) -> None:
    record = make_trade(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id=7,
        price=price,
        quantity=quantity,
        is_buyer_maker=True,
        trade_time=BASE_MS,
        event_time=BASE_MS,
        received_at=BASE_MS,
    )
    store_trades([record])
    stored = Trade.objects.get(exchange="binance", symbol="BTCUSDT", trade_id=7)
    assert trade_item_from_record(record) == trade_item(stored)
    assert trade_item(stored)["side"] == "sell"
    assert trade_item(stored)["t"] == BASE_MS
