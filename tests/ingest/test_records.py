"""make_trade: the fast path for well-formed input and the checked path agree on every value."""

from __future__ import annotations

import json
import tracemalloc
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ingest.records import (
    DeadLetter,
    InvalidRecordError,
    TradeRecord,
    bounded_raw,
    decode,
    make_trade,
    trade_key,
)

pytestmark = pytest.mark.unit

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


# --------------------------------------------------------------------------------------------- hostile input
# A record with a list as its exchange: it once crashed the consumer (unhashable type) instead of becoming a DLQ entry.
UNHASHABLE_EXCHANGE_RECORD = (
    b'{"v":1,"exchange":[],"symbol":"BTCUSDT","trade_id":1,"price":"1","quantity":"1","is_buyer_maker":true,'
    b'"trade_time":1723161255342,"event_time":1723161255343,"received_at":1723161256612}'
)


def wire(**overrides: Any) -> bytes:
    return orjson.dumps({"v": 1, **fields(**overrides)})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (UNHASHABLE_EXCHANGE_RECORD, "unknown exchange []"),  # was TypeError: unhashable type: 'list'
        (wire(exchange={"a": 1}), "unknown exchange {'a': 1}"),
        (wire(trade_id="\u00b2"), "trade_id must be a non-negative 64-bit integer, got '\u00b2'"),  # was ValueError
        (wire(trade_id="9" * 5000), "trade_id must be a non-negative 64-bit integer, got '9999"),  # was ValueError
        (b'{"v":1,"trade_id":' + b"9" * 5000 + b"}", "malformed JSON"),
        (wire(price="\u0661\u0662"), "price is not a number"),  # Decimal reads Arabic-Indic digits, PostgreSQL not
        (wire(symbol="BTC\x00USD"), "symbol has unprintable characters"),
        (wire(symbol=["BTCUSDT"]), "symbol must be a non-empty string"),
        (wire(is_buyer_maker=list(range(100))), "is_buyer_maker must be a boolean, got <list of 100 items>"),
        (b'{"v":' + b"9" * 5000 + b"}", "malformed JSON"),
        (b'{"v":true}', "unsupported schema version True"),
        (None, "empty message"),
        (b"\xff\xfe", "malformed JSON"),
    ],
)
def test_hostile_records_raise_only_invalid_record_error(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidRecordError) as refused:
        decode(value)
    assert refused.value.reason.startswith(reason)
    assert len(refused.value.reason) < 300


class _NoRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr is broken")


def test_a_value_whose_repr_raises_still_gets_a_reason() -> None:
    with pytest.raises(InvalidRecordError) as refused:
        make_trade(**fields(is_buyer_maker=_NoRepr()))
    assert refused.value.reason == "is_buyer_maker must be a boolean, got <_NoRepr>"


def test_huge_integers_are_refused_without_printing_them() -> None:
    # str() of an int over 4,300 digits raises ValueError: the reason must not try.
    huge = 10**5000
    for name in ("trade_id", "trade_time", "price"):
        with pytest.raises(InvalidRecordError) as refused:
            make_trade(**fields(**{name: huge}))
        assert "digits>" in refused.value.reason


@pytest.mark.parametrize("skew_ms", [0, 60_000])
def test_a_trade_time_beyond_received_at_plus_the_skew_is_refused_on_both_paths(skew_ms: int) -> None:
    received = T0 + 2
    at_limit = fields(trade_time=received + skew_ms, event_time=received + skew_ms)
    assert make_trade(**at_limit, max_skew_ms=skew_ms).trade_time == received + skew_ms
    beyond = fields(trade_time=received + skew_ms + 1)
    for values in (beyond, {**beyond, "symbol": " btcusdt"}):  # fast path, then the checked path
        with pytest.raises(InvalidRecordError) as refused:
            make_trade(**values, max_skew_ms=skew_ms)
        assert "more than the allowed clock skew" in refused.value.reason


def test_the_skew_comes_from_settings(settings: Any) -> None:
    settings.TRADE_MAX_CLOCK_SKEW_MS = 1000
    with pytest.raises(InvalidRecordError):
        decode(wire(trade_time=T0 + 2 + 1001))
    settings.TRADE_MAX_CLOCK_SKEW_MS = 2000
    assert decode(wire(trade_time=T0 + 2 + 1001)).trade_time == T0 + 1003


def test_dead_letter_keeps_a_bounded_prefix_and_the_full_length() -> None:
    assert bounded_raw(b"abc", 10) == ("abc", 3)
    assert bounded_raw(None, 10) == ("", 0)
    assert bounded_raw("\u00e9\u00e9", 3) == ("\u00e9", 4)  # a character split at the cut is dropped, not mangled
    assert bounded_raw(b"\xff" * 4, 2) == ("\ufffd\ufffd", 4)
    raw, length = bounded_raw(b"x" * 900_000, 64 * 1024)
    letter = DeadLetter("consumer:g", "r" * 5000, raw, 1, raw_length=length, raw_truncated=True)
    body = orjson.loads(letter.encode())
    assert body["raw_length"] == 900_000
    assert body["raw_truncated"] is True
    assert len(body["raw"]) == 64 * 1024
    assert len(body["reason"]) == 1000


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.text(alphabet="0123456789.\u00b2\u0661eE+- ", max_size=25)
    | st.sampled_from(["binance", "kraken", "BTCUSDT", " btc-usd ", "1", "0", "1e3", str(T0), "9" * 40])
)
_json_values = st.recursive(
    _json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
)
_FIELDS = ("v", *fields())


@hypothesis_settings(
    deadline=None
)  # the first examples include orjson/Decimal warm-up: no per-example timing threshold
@given(
    overrides=st.dictionaries(st.sampled_from(_FIELDS), _json_values, max_size=4),
    dropped=st.sets(st.sampled_from(_FIELDS), max_size=2),
)
def test_any_json_values_in_any_field_raise_only_invalid_record_error(
    overrides: dict[str, Any], dropped: set[str]
) -> None:
    record = {"v": 1, **fields(), **overrides}
    for name in dropped:
        record.pop(name, None)
    value = json.dumps(record).encode()  # the stdlib writes integers of any size (orjson stops at 64 bits)
    reason = "accepted"
    try:
        decoded = decode(value)
    except InvalidRecordError as exc:  # the only exception allowed; anything else fails the test
        reason = exc.reason
    else:
        assert isinstance(decoded, TradeRecord)
    assert reason


# --------------------------------------------------------------------------------------------- string trade ids
UUID_ID = "20f43950-d8dd-5b31-9112-a178eb6023af"  # Bybit's documented example of a publicTrade id


def test_trade_key_is_the_integer_of_a_numeric_id_and_a_63_bit_digest_of_any_other() -> None:
    import hashlib

    assert trade_key("2290000000036455162") == 2290000000036455162  # Bybit's spot ids are numeric strings
    expected = int.from_bytes(hashlib.blake2b(UUID_ID.encode(), digest_size=8).digest(), "big") >> 1
    assert trade_key(UUID_ID) == expected
    assert 0 <= trade_key(UUID_ID) < 2**63
    assert trade_key("9" * 19) != 10**19 - 1  # past 2**63: not an integer id, digested like any string
    assert trade_key(UUID_ID) != trade_key(UUID_ID.upper())


def test_a_string_id_rides_as_trade_ref_and_round_trips_through_the_wire() -> None:
    record = make_trade(**fields(exchange="bybit", trade_id=trade_key(UUID_ID), trade_ref=UUID_ID))
    assert (record.trade_id, record.trade_ref) == (trade_key(UUID_ID), UUID_ID)
    wire = orjson.loads(record.encode())
    assert wire["trade_ref"] == UUID_ID
    assert wire["v"] == 1
    assert decode(record.encode()) == record
    # An integer id is its own key: no trade_ref kept, and the wire has none (as for every integer-id exchange).
    numeric = make_trade(**fields(exchange="bybit", trade_id=2290000000036455162, trade_ref="2290000000036455162"))
    assert numeric.trade_ref is None
    assert "trade_ref" not in orjson.loads(numeric.encode())
    assert "trade_ref" not in orjson.loads(make_trade(**fields()).encode())


@pytest.mark.parametrize(
    ("trade_ref", "trade_id", "reason"),
    [
        (UUID_ID, 1, "is not the key of trade_ref"),
        ("x" * 65, None, "trade_ref must be up to 64 printable ASCII"),
        ("has blank", None, "trade_ref must be up to 64 printable ASCII"),
        (12, None, "trade_ref must be up to 64 printable ASCII"),
        ("caf\u00e9", None, "trade_ref must be up to 64 printable ASCII"),
    ],
)
def test_a_bad_trade_ref_is_refused_with_a_reason(trade_ref: Any, trade_id: int | None, reason: str) -> None:
    key = trade_id if trade_id is not None else 7
    with pytest.raises(InvalidRecordError, match=reason):
        make_trade(**fields(exchange="bybit", trade_id=key, trade_ref=trade_ref))
    value = orjson.dumps({"v": 1, **fields(exchange="bybit", trade_id=key), "trade_ref": trade_ref})
    with pytest.raises(InvalidRecordError, match=reason):
        decode(value)


def test_an_encoded_record_occupies_its_length_not_a_serialiser_buffer() -> None:
    # Ingest holds encoded values until Kafka acknowledges them; orjson's own bytes kept a 4 KB buffer each, which
    # made 200,000 held trades take ~1 GB (docs/RELIABILITY.md, kafka-down).
    trade = make_trade(**fields())
    letter = DeadLetter(source="ingest:binance", reason="bad", raw="{", received_at=1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        values = [trade.encode() for _ in range(1000)] + [letter.encode() for _ in range(1000)]
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    payload = sum(map(len, values))
    # CPython's bytes header (33 bytes), the list's pointers and allocator rounding: not a buffer per value
    assert used < payload + 100 * len(values), (used, payload)
