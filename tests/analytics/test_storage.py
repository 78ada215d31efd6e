"""store_trades on the real PostgreSQL: idempotent on the natural key, exact decimals and times, windows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import DataError, connection

from analytics.models import Trade
from analytics.payloads import trade_item, trade_item_from_record
from analytics.storage import batch_windows, store_isolating, store_trades
from analytics.windows import SymbolWindow
from ingest.records import TradeRecord, make_trade, trade_key

BASE_MS = 1_723_161_255_342


def trade(trade_id: int, *, symbol: str = "BTCUSDT", exchange: str = "binance", offset_ms: int = 0) -> TradeRecord:
    return make_trade(
        exchange=exchange,
        symbol=symbol,
        trade_id=trade_id,
        price="61837.63000000",
        quantity="0.00123000",
        is_buyer_maker=trade_id % 2 == 0,
        trade_time=BASE_MS + offset_ms,
        event_time=BASE_MS + offset_ms + 1,
        received_at=BASE_MS + offset_ms + 5,
    )


pytestmark = pytest.mark.django_db


def test_store_inserts_exact_values_and_skips_generated_columns():
    result = store_trades([trade(1)])
    assert (result.received, result.inserted, result.duplicates) == (1, 1, 0)
    row = Trade.objects.get(exchange="binance", symbol="BTCUSDT", trade_id=1)
    assert row.price == Decimal("61837.63")
    assert row.quantity == Decimal("0.00123")
    # The database computes the notional exactly, and stamps stored_at itself.
    assert row.quote_quantity == Decimal("61837.63") * Decimal("0.00123")
    assert row.traded_at == datetime.fromtimestamp(BASE_MS / 1000, tz=UTC)
    assert row.traded_at.microsecond == 342_000
    assert row.received_at == datetime.fromtimestamp((BASE_MS + 5) / 1000, tz=UTC)
    assert row.is_buyer_maker is False
    assert row.stored_at is not None


def test_same_records_twice_give_one_row_each():
    records = [trade(i, offset_ms=i) for i in range(100)]
    first = store_trades(records)
    second = store_trades(records)
    assert first.inserted == 100
    assert second.inserted == 0
    assert second.duplicates == 100
    # A replay still reports the windows it touched, so candles are recomputed (see the module docstring).
    assert second.windows == [SymbolWindow("binance", "BTCUSDT", BASE_MS, BASE_MS + 99, 100)]
    assert Trade.objects.count() == 100


def test_internal_duplicate_and_already_stored_row_do_not_drop_the_batch():
    store_trades([trade(5)])
    batch = [trade(4), trade(5), trade(6), trade(6), trade(7, symbol="ETHUSDT")]
    result = store_trades(batch)
    assert result.inserted == 3
    assert result.duplicates == 2
    assert sorted(Trade.objects.values_list("symbol", "trade_id")) == [
        ("BTCUSDT", 4),
        ("BTCUSDT", 5),
        ("BTCUSDT", 6),
        ("ETHUSDT", 7),
    ]


def test_natural_key_includes_exchange_and_symbol():
    result = store_trades([trade(1), trade(1, symbol="ETHUSDT"), trade(1, exchange="coinbase", symbol="BTC-USD")])
    assert result.inserted == 3


def test_windows_per_symbol_cover_min_and_max_trade_time():
    records = [
        trade(10, offset_ms=500),
        trade(11, offset_ms=-200),
        trade(12, offset_ms=900),
        trade(1, symbol="BTC-USD", exchange="coinbase", offset_ms=50),
    ]
    result = store_trades(records)
    assert result.windows == [
        SymbolWindow("binance", "BTCUSDT", BASE_MS - 200, BASE_MS + 900, 3),
        SymbolWindow("coinbase", "BTC-USD", BASE_MS + 50, BASE_MS + 50, 1),
    ]
    assert result.inserted == 4


def test_empty_batch_touches_nothing():
    result = store_trades([])
    assert (result.received, result.inserted, result.windows) == (0, 0, [])


def test_value_that_does_not_fit_raises_and_stores_nothing():
    huge = make_trade(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id=99,
        price="1E+25",
        quantity="1",
        is_buyer_maker=True,
        trade_time=BASE_MS,
        event_time=BASE_MS,
        received_at=BASE_MS,
    )
    with pytest.raises(DataError):
        store_trades([trade(1), huge])
    assert Trade.objects.count() == 0
    # The connection is usable again and the staging table was emptied by the rollback.
    assert store_trades([trade(2)]).inserted == 1


def test_symbol_with_copy_special_characters_is_escaped():
    odd = make_trade(
        exchange="kraken",
        symbol="BTC/USD\\X",
        trade_id=3,
        price="1",
        quantity="2",
        is_buyer_maker=False,
        trade_time=BASE_MS,
        event_time=BASE_MS,
        received_at=BASE_MS,
    )
    assert store_trades([odd]).inserted == 1
    assert Trade.objects.get(trade_id=3).symbol == "BTC/USD\\X"


@pytest.mark.django_db(transaction=True)
def test_staging_table_survives_a_new_session():
    assert store_trades([trade(1)]).inserted == 1
    connection.close()
    assert store_trades([trade(2)]).inserted == 1


def test_batch_windows_without_database():
    assert batch_windows([]) == []
    windows = batch_windows([trade(1, offset_ms=3), trade(2, offset_ms=1), trade(3, offset_ms=2)])
    assert windows == [SymbolWindow("binance", "BTCUSDT", BASE_MS + 1, BASE_MS + 3, 3)]


def test_store_isolating_leaves_out_exactly_the_refused_records_and_stores_the_rest():
    records = [trade(i, offset_ms=i) for i in range(20)]
    for bad in (3, 4, 17):  # a price PostgreSQL's column cannot hold (numeric field overflow)
        records[bad] = records[bad]._replace(price="1E+25")
    result, refused = store_isolating(records)
    assert [index for index, _ in refused] == [3, 4, 17]
    assert all(reason.startswith("rejected by PostgreSQL: numeric field overflow") for _, reason in refused)
    assert (result.received, result.inserted) == (17, 17)
    assert result.windows == [SymbolWindow("binance", "BTCUSDT", BASE_MS, BASE_MS + 19, 17)]
    stored = set(Trade.objects.values_list("trade_id", flat=True))
    assert stored == set(range(20)) - {3, 4, 17}
    assert store_isolating(records[:3]) == (store_trades(records[:3]), [])  # nothing refused: one transaction


def test_a_string_trade_id_is_stored_with_its_key_and_a_replay_is_refused_by_the_key():
    ref = "20f43950-d8dd-5b31-9112-a178eb6023af"
    record = trade(trade_key(ref), exchange="bybit")._replace(trade_ref=ref)
    plain = trade(2, exchange="bybit")
    assert store_trades([record, plain]).inserted == 2
    assert store_trades([record]).inserted == 0  # the same trade again (a REST overlap): refused by the natural key
    stored = dict(Trade.objects.filter(exchange="bybit").values_list("trade_id", "trade_ref"))
    assert stored == {trade_key(ref): ref, 2: None}
    assert trade_item(Trade.objects.get(trade_id=trade_key(ref)))["trade_ref"] == ref
    assert "trade_ref" not in trade_item(Trade.objects.get(exchange="bybit", trade_id=2))
    assert trade_item_from_record(record) == trade_item(Trade.objects.get(trade_id=trade_key(ref)))
