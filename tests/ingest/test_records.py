"""make_trade: the fast path for well-formed input and the checked path agree on every value."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.records import InvalidRecordError, TradeRecord, decode, make_trade

T0 = 1_723_161_255_342


def fields(**overrides: Any) -> dict[str, Any]:
    """A well-formed Binance trade, with ``overrides``."""
    base: dict[str, Any] = {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "trade_id": 3_735_683_259,
        "price": "61837.63000000",
        "quantity": "0.02000000",
        "is_buyer_maker": True,
        "trade_time": T0,
        "event_time": T0 + 1,
        "received_at": T0 + 2,
    }
    return {**base, **overrides}


def test_well_formed_input_is_kept_exactly() -> None:
    record = make_trade(**fields())
    assert record == TradeRecord(
        "binance", "BTCUSDT", 3_735_683_259, "61837.63000000", "0.02000000", True, T0, T0 + 1, T0 + 2
    )
    assert decode(record.encode()) == record


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"symbol": " btcusdt "}, {"symbol": "BTCUSDT"}),  # normalised on the checked path
        ({"price": " 1.50 "}, {"price": "1.50"}),
        ({"price": "1e3"}, {"price": "1e3"}),  # Decimal accepts it; the text is kept as sent
        ({"trade_id": "42"}, {"trade_id": 42}),
        ({"symbol": "BTC/USD", "exchange": "kraken"}, {"symbol": "BTC/USD"}),
        ({"symbol": "BTC-USD", "exchange": "coinbase"}, {"symbol": "BTC-USD"}),
    ],
)
def test_other_spellings_take_the_checked_path(overrides: dict[str, Any], expected: dict[str, Any]) -> None:
    record = make_trade(**fields(**overrides))
    for name, value in expected.items():
        assert getattr(record, name) == value


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"price": "0.00000000"}, "price must be positive"),
        ({"quantity": "000"}, "quantity must be positive"),
        ({"price": "-1.5"}, "price must be positive"),
        ({"price": "abc"}, "price is not a number"),
        ({"price": "NaN"}, "price is not finite"),
        ({"price": 1.5}, "price must be a decimal string"),
        ({"trade_id": -1}, "trade_id must be a non-negative 64-bit integer"),
        ({"trade_id": 2**63}, "trade_id must be a non-negative 64-bit integer"),
        ({"trade_id": True}, "trade_id must be a non-negative 64-bit integer"),
        ({"is_buyer_maker": 1}, "is_buyer_maker must be a boolean"),
        ({"trade_time": 5}, "trade_time is out of range"),
        ({"event_time": "1723161255342"}, "event_time must be integer milliseconds"),
        ({"symbol": ""}, "symbol must be a non-empty string"),
        ({"symbol": "X" * 33}, "symbol must be a non-empty string"),
        ({"exchange": "ftx"}, "unknown exchange"),
    ],
)
def test_bad_values_are_refused_with_a_reason(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecordError) as refused:
        make_trade(**fields(**overrides))
    assert refused.value.reason.startswith(reason)


decimals = st.decimals(min_value=Decimal("0"), max_value=Decimal("1e12"), places=8, allow_nan=False)


@given(price=decimals, quantity=decimals, trade_id=st.integers(min_value=-5, max_value=2**64))
def test_fast_and_checked_paths_agree(price: Decimal, quantity: Decimal, trade_id: int) -> None:
    # The same values through the fast path (plain strings) and through the checked one (padded strings).
    plain = fields(price=f"{price:f}", quantity=f"{quantity:f}", trade_id=trade_id)
    padded = fields(price=f" {price:f}", quantity=f"{quantity:f} ", trade_id=trade_id, symbol="btcusdt")
    outcomes = []
    for values in (plain, padded):
        try:
            outcomes.append(make_trade(**values))
        except InvalidRecordError as exc:
            outcomes.append(exc.reason)  # type: ignore[arg-type]
    assert outcomes[0] == outcomes[1]
    valid = price > 0 and quantity > 0 and 0 <= trade_id < 2**63
    assert isinstance(outcomes[0], TradeRecord) is valid
