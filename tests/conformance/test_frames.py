"""Conformance, frames: every registered exchange parses its real recorded frames and its documentation's example
frames exactly, never raises on mutated or arbitrary input, and has its simulator module.

The expected values come from :mod:`tests.conformance.hooks` (the documented layouts, read with ``json``), never
from the parser under test.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.exchanges.base import BadInput, ControlEvent, ParseResult
from ingest.records import TradeRecord, make_trade
from simulator.base import Protocol
from tests.conformance import hooks

pytestmark = pytest.mark.unit

EXCHANGES = hooks.names()
# The ingest clock: after every recorded trade (a trade later than received_at + 60 s is refused).
NOW = 4_100_000_000_000
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def real_frames_or_skip(exchange: str) -> list[str]:
    """The exchange's real recorded frames; the test is skipped, naming why, when data/ holds none."""
    if hooks.recording(exchange) is None:
        pytest.skip(f"no real {exchange} recording is bundled in data/ (hooks.RECORDINGS)")
    return hooks.real_frames(exchange)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_real_recorded_frames_parse_exactly(exchange: str) -> None:
    """Each trade of the recording, field by field, as its documented layout defines it; a trade an exchange
    repeats (Coinbase's snapshot) once; nothing refused but frames that carry no trade."""
    frames = real_frames_or_skip(exchange)
    parser = hooks.parser(exchange)
    seen: set[tuple[str, int]] = set()
    compared = 0
    for frame in frames:
        want = []
        for trade in hooks.expected_trades(exchange, frame):
            if (trade.symbol, trade.trade_id) not in seen:  # a repeat (snapshot) is not published twice
                seen.add((trade.symbol, trade.trade_id))
                want.append(trade)
        want.sort(key=lambda t: t.trade_id)  # ingest publishes oldest first per frame
        result = parser.parse(frame, NOW)
        assert [hooks.from_record(r) for r in result.trades] == want, frame[:300]
        assert all(r.exchange == exchange and r.received_at == NOW for r in result.trades)
        if want:
            assert result.bad == [], frame[:300]
        compared += len(want)
    assert compared >= 50, "the recording holds trades"  # OKX's, the smallest, holds 74


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_documented_example_frames_parse_to_the_documented_values(exchange: str) -> None:
    examples = hooks.documented_frames(exchange)
    assert examples, f"no documented {exchange} example in hooks.DOCUMENTED"
    for frame, documented in examples:
        # The hand-written values agree with the layout hook (so the hook that checks the recordings is right too).
        assert sorted(hooks.expected_trades(exchange, frame), key=lambda t: t.trade_id) == documented
        result = hooks.parser(exchange).parse(frame, NOW)
        assert (result.bad, result.events) == ([], [])
        assert [hooks.from_record(r) for r in result.trades] == documented


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_simulated_frames_of_real_trades_parse_exactly(exchange: str) -> None:
    """The simulator's frames of the bundled real trades (relabelled) parse to those trades: for an exchange without
    a real recording this is what the backfill and chaos runs feed it, so it must be exact too."""
    trades = hooks.bundled_trades(exchange, 500)
    frames = hooks.simulated_frames(exchange, trades, per_frame=7)
    parser = hooks.parser(exchange)
    got = []
    for frame in frames:
        want = sorted(hooks.expected_trades(exchange, frame), key=lambda t: t.trade_id)
        result = parser.parse(frame, NOW)
        assert result.bad == []
        assert [hooks.from_record(r) for r in result.trades] == want
        got.extend(result.trades)
    assert [r.trade_id for r in got] == [t.trade_id for t in trades]
    for record, trade in zip(got, trades, strict=True):
        assert hooks.decimal_equal(record.price, trade.price)
        assert hooks.decimal_equal(record.quantity, trade.quantity)
        assert (record.symbol, record.is_buyer_maker, record.trade_time) == (
            trade.symbol,
            trade.is_buyer_maker,
            trade.trade_time,
        )


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_the_simulator_has_a_module_for_the_exchange(exchange: str) -> None:
    module = importlib.import_module(hooks.simulator_module(exchange))
    served = hooks.protocol_class(exchange)
    assert issubclass(served, Protocol)
    # The server serves this module's protocol, under the exchange's own name (not a fallback to another one).
    assert served.__module__ == module.__name__
    assert served.name == exchange
    assert callable(module.encode_trade)


# --------------------------------------------------------------------------------------------- fuzzing

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
keys = st.sampled_from(["e", "s", "t", "p", "q", "T", "E", "m", "stream", "data", "channel", "events", "trades"])
nearly_valid = st.dictionaries(keys, json_values, max_size=10)
# Values a mutation puts where a field was: wrong types, huge and tiny numbers, odd strings.
odd_values = st.one_of(
    json_values,
    st.sampled_from([10**30, -(10**30), 2**63, 2**64, 1e308, -1e-308, 0, -1, "", "1e999999", "NaN", "0x10", "١٢"]),
)


def arbitrary_frames() -> st.SearchStrategy[str | bytes]:
    """Frames of no exchange in particular: binary, text, JSON, and JSON shaped like each layout."""
    return st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        json_values.map(json.dumps),
        nearly_valid.map(json.dumps),
        nearly_valid.map(lambda v: json.dumps({"stream": "x@trade", "data": v})),
        nearly_valid.map(lambda v: json.dumps({"channel": "market_trades", "events": [{"trades": [v]}]})),
        nearly_valid.map(lambda v: json.dumps({"channel": "trade", "data": [v]})),
    )


def seed_frames(exchange: str) -> list[str]:
    """Trade frames to mutate: the real recording's (or the simulator's frames of real trades) and the
    documentation's examples."""
    if hooks.recording(exchange) is not None:
        frames = [f for f in hooks.real_frames(exchange) if hooks.expected_trades(exchange, f)][:100]
    else:
        trades = hooks.bundled_trades(exchange, 300)
        frames = [f.decode() for f in hooks.simulated_frames(exchange, trades, per_frame=3)]
    return frames + [frame for frame, _ in hooks.documented_frames(exchange)]


def _containers(value: Any, out: list[Any]) -> list[Any]:
    if isinstance(value, dict | list):
        out.append(value)
        for child in value.values() if isinstance(value, dict) else value:
            _containers(child, out)
    return out


@st.composite
def mutated(draw: st.DrawFn, frames: list[str]) -> str | bytes:
    """A real frame with one thing wrong: a field dropped or given an odd value, cut short, bytes flipped."""
    frame = draw(st.sampled_from(frames))
    kind = draw(st.sampled_from(["drop", "alter", "truncate", "bytes", "wrap"]))
    if kind == "truncate":
        return frame[: draw(st.integers(0, max(len(frame) - 1, 0)))]
    if kind == "bytes":
        raw = bytearray(frame.encode())
        for _ in range(draw(st.integers(1, 5))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        return bytes(raw)
    message = json.loads(frame)
    if kind == "wrap":
        return json.dumps(draw(st.sampled_from([[message], {"data": message}, {"stream": "x", "data": [message]}])))
    target = draw(st.sampled_from(_containers(message, [])))
    if not target:
        return json.dumps(message)
    if isinstance(target, dict):
        key = draw(st.sampled_from(sorted(target)))
        if kind == "drop":
            del target[key]
        else:
            target[key] = draw(odd_values)
    else:
        index = draw(st.integers(0, len(target) - 1))
        if kind == "drop":
            del target[index]
        else:
            target[index] = draw(odd_values)
    return json.dumps(message)


def assert_accounted(exchange: str, raw: str | bytes) -> None:
    """Parsing returns (never raises) records that pass validation again, refusals with a reason, and events; a
    frame that is not JSON is exactly one refusal."""
    result = hooks.parser(exchange).parse(raw, NOW)
    assert isinstance(result, ParseResult)
    for record in result.trades:
        assert isinstance(record, TradeRecord)
        assert make_trade(**record._asdict()) == record
    assert all(isinstance(bad, BadInput) and bad.reason and isinstance(bad.raw, str) for bad in result.bad)
    assert all(isinstance(event, ControlEvent) for event in result.events)
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        assert (result.trades, len(result.bad)) == ([], 1)
        assert result.bad[0].reason.startswith("malformed JSON")


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_mutated_real_frames_never_raise(exchange: str) -> None:
    frames = seed_frames(exchange)

    @FUZZ
    @given(mutated(frames))
    def check(raw: str | bytes) -> None:
        assert_accounted(exchange, raw)

    check()


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_arbitrary_frames_never_raise(exchange: str) -> None:
    @FUZZ
    @given(arbitrary_frames())
    def check(raw: str | bytes) -> None:
        assert_accounted(exchange, raw)

    check()


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_huge_numbers_in_a_real_frame_are_refused_not_raised(exchange: str) -> None:
    """Every number and numeric string of a real trade frame made huge, one at a time: refused or a valid record."""
    frame = seed_frames(exchange)[0]
    message = json.loads(frame)
    spots = [
        (container, key)
        for container in _containers(message, [])
        for key in (container if isinstance(container, dict) else range(len(container)))
        if isinstance(container[key], int | float | str) and not isinstance(container[key], bool)
    ]
    assert spots
    for container, key in spots:
        before = container[key]
        for huge in (10**400, -(10**30), "9" * 5000, "1e999999"):
            container[key] = huge
            assert_accounted(exchange, json.dumps(message))
        container[key] = before
