"""``simulate_exchange --present``: recorded trades replayed on the present clock."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from simulator.feed import on_present_clock, replay_source, trade_time
from simulator.management.commands.simulate_exchange import build_source
from simulator.replay import read_trades
from tests.simulator.test_simulator_support import BTC_0808, TRX_CSV

pytestmark = pytest.mark.unit

NOW = 1_800_000_000_000


def test_every_time_moves_by_now_minus_the_first_trade_time() -> None:
    recorded = list(itertools.islice(read_trades(BTC_0808), 2000))
    shifted, pace = on_present_clock(iter(recorded), trade_time, lambda: NOW)
    out = list(shifted)
    delta = NOW - recorded[0].trade_time
    assert out[0].trade_time == NOW
    for r, s in zip(recorded, out, strict=True):
        assert (s.trade_time, s.event_time, s.received_at) == (
            r.trade_time + delta,
            r.event_time + delta,
            r.received_at + delta,
        )
        assert (s.trade_id, s.price, s.quantity, s.is_buyer_maker, s.symbol) == (
            r.trade_id,
            r.price,
            r.quantity,
            r.is_buyer_maker,
            r.symbol,
        )
        assert pace(s) == s.trade_time


def test_merged_streams_of_different_years_all_start_now_and_keep_their_pace() -> None:
    # A 2024 BTCUSDT recording and a 2025 TRXUSDT one: each starts at the present and keeps its own offsets.
    records, pace, _ = replay_source([BTC_0808, TRX_CSV])
    first_by_symbol: dict[str, int] = {}
    for r in itertools.islice(read_trades(BTC_0808), 1):
        first_by_symbol[r.symbol] = r.trade_time
    for r in itertools.islice(read_trades(TRX_CSV), 1):
        first_by_symbol[r.symbol] = r.trade_time
    shifted, present_pace = on_present_clock(records, pace, lambda: NOW)
    out = list(itertools.islice(shifted, 5000))
    assert {r.symbol for r in out} == {"BTCUSDT", "TRXUSDT"}
    times = [present_pace(r) for r in out]
    assert times == sorted(times)  # still one time-ordered feed
    assert min(times) == NOW
    assert max(times) - NOW < 3_600_000
    originals = {(r.symbol, r.trade_id): r.trade_time for r in itertools.islice(read_trades(BTC_0808), 5000)}
    originals |= {(r.symbol, r.trade_id): r.trade_time for r in itertools.islice(read_trades(TRX_CSV), 5000)}
    for r in out:
        assert r.trade_time - NOW == originals[(r.symbol, r.trade_id)] - first_by_symbol[r.symbol]


def test_the_present_option_uses_the_wall_clock_when_the_feed_starts() -> None:
    base: dict[str, Any] = {"synthetic": False, "symbols": "", "rate": 0.0, "seed": 0, "symbol": None, "loop": True}
    source, pace, known = build_source({**base, "replay": [str(BTC_0808)], "present": True}, "binance")
    assert known == ("BTCUSDT",)
    before = time.time_ns() // 1_000_000
    first = next(iter(source))
    after = time.time_ns() // 1_000_000
    assert before <= first.trade_time <= after
    assert pace(first) == first.trade_time
