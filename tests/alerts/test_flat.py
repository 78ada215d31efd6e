"""The whole-batch evaluator (alerts.flat) on several markets at once, and the per-market one (alerts.evaluate, the
readable reference), batch after batch, against the brute forces of test_trade_kinds: markets must never leak into
each other (windows, previous prices, cooldowns)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from alerts.evaluate import MarketRules, RuleState, Trades, Window, evaluate, parse_rule
from alerts.flat import Item, evaluate_batch
from ingest.records import TradeRecord
from tests.alerts.test_trade_kinds import brute_cooldown, brute_cross, brute_move
from tests.analytics.test_consumer import real_trades

pytestmark = pytest.mark.unit

MARKETS = 4


def market_trades() -> list[list[TradeRecord]]:
    base = sorted(real_trades(), key=lambda r: r.trade_id)
    size = len(base) // MARKETS
    # Each market its own stretch of the recording (own prices and times), ids overlapping across markets.
    return [
        [t._replace(symbol=f"M{m}", trade_id=t.trade_id - m * size) for t in base[m * size : (m + 1) * size]]
        for m in range(MARKETS)
    ]


@pytest.mark.parametrize("whole_batch", [True, False], ids=["alerts.flat", "alerts.evaluate per market"])
def test_evaluation_matches_the_brute_force_market_by_market(whole_batch):
    streams = market_trades()
    specs: list[tuple[str, dict[str, Any], int]] = [
        ("price_cross", {"level": "61700", "direction": "both"}, 0),
        ("price_cross", {"level": "61650.5", "direction": "up"}, 30),
        ("pct_move", {"pct": "0.05", "window_s": 30, "direction": "both"}, 0),
        ("pct_move", {"pct": "0.03", "window_s": 5, "direction": "down"}, 10),
        ("whale", {"min_notional": "20000"}, 0),
    ]
    rules: dict[int, tuple[int, str, dict[str, Any], int]] = {}
    next_id = 1
    for m in range(MARKETS):
        for kind, params, cooldown in specs:
            rules[next_id] = (m, kind, params, cooldown)
            next_id += 1
    parsed = {
        i: parse_rule(i, 1, kind, "binance", f"M{m}", params, cooldown)
        for i, (m, kind, params, cooldown) in rules.items()
    }
    compiled = [MarketRules.compile([r for i, r in parsed.items() if rules[i][0] == m]) for m in range(MARKETS)]
    states: dict[int, RuleState] = {}
    suppressed = dict.fromkeys(rules, 0)
    windows: list[Window | None] = [None] * MARKETS
    fired: dict[int, list[int]] = {i: [] for i in rules}
    per = 230  # trades per market per batch: windows span batches, short ones start inside them
    for start in range(0, len(streams[0]), per):
        chunks = [s[start : start + per] for s in streams]
        live = [m for m in range(MARKETS) if chunks[m]]
        items = [
            Item(
                compiled[m],
                Trades.from_lists(
                    [t.trade_id for t in chunks[m]],
                    [t.price for t in chunks[m]],
                    [t.quantity for t in chunks[m]],
                    [t.trade_time for t in chunks[m]],
                    [t.is_buyer_maker for t in chunks[m]],
                ),
                windows[m],
                Decimal("100000"),
            )
            for m in live
        ]
        if whole_batch:
            outcomes = evaluate_batch(items, states)
            for it, outcome in zip(items, outcomes, strict=True):  # every market's window as Window.then makes it
                if it.rules.moves:
                    assert outcome.window is not None
                    alone = (it.window or Window.empty()).then(
                        it.trades.trade_id, it.trades.time_ms, it.trades.price, it.trades.price_text, it.rules.window_ms
                    )
                    assert_same_window(outcome.window, alone)
        else:
            outcomes = [evaluate(it.rules, it.trades, states, it.window, it.threshold) for it in items]
        for m, outcome in zip(live, outcomes, strict=True):
            for f in outcome.firings:
                fired[f.rule_id].append(chunks[m][f.index].trade_id)
            for rule_id, state in outcome.states.items():
                suppressed[rule_id] += state.suppressed
                states[rule_id] = RuleState(state.pos, state.since_id, state.up_on, state.down_on, state.last_fired_ms)
            windows[m] = outcome.window
    for i, (m, kind, params, cooldown) in rules.items():
        trades = streams[m]
        times = {t.trade_id: t.trade_time for t in trades}
        if kind == "price_cross":
            raw = brute_cross(trades, params["level"], params["direction"])
        elif kind == "pct_move":
            raw = [t for t, _ in brute_move(trades, params["pct"], params["window_s"], params["direction"])]
        else:
            raw = [t.trade_id for t in trades if Decimal(t.price) * Decimal(t.quantity) >= Decimal("20000")]
        kept, count = brute_cooldown([(t, times[t]) for t in raw], cooldown)
        assert sorted(fired[i]) == sorted(kept), (m, kind, params)
        assert suppressed[i] == count, (m, kind, params)
    # Not vacuous: every kind fired in at least two markets.
    for kind in ("price_cross", "pct_move", "whale"):
        assert len({rules[i][0] for i in rules if rules[i][1] == kind and fired[i]}) >= 2, kind


def assert_same_window(got: Window, want: Window) -> None:
    assert got.last_ms == want.last_ms
    for mine, theirs in ((got.lows, want.lows), (got.highs, want.highs)):
        assert mine.trade_id.tolist() == theirs.trade_id.tolist()
        assert mine.time_ms.tolist() == theirs.time_ms.tolist()
        assert mine.price.tolist() == theirs.price.tolist()
        assert list(mine.text) == list(theirs.text)


def test_batch_trades_are_sliced_in_trade_id_order_whatever_order_a_market_arrives_in() -> None:
    from alerts.wiring import _trades_of
    from analytics.storage import StoredTrades

    ordered = StoredTrades(
        "binance", "AUSDT", [1, 2, 3], ["1.5", "2.5", "3.5"], ["1", "2", "3"], [True, False, True], [10, 20, 30]
    )
    shuffled = StoredTrades(
        "binance", "BUSDT", [9, 7, 8], ["9.5", "7.5", "8.5"], ["9", "7", "8"], [False, True, True], [90, 70, 80]
    )
    for stored, trades in zip((ordered, shuffled), _trades_of([ordered, shuffled]), strict=True):
        want = Trades.from_lists(
            stored.trade_ids, stored.prices, stored.quantities, stored.times_ms, stored.is_buyer_maker
        )
        assert trades.trade_id.tolist() == want.trade_id.tolist()
        assert trades.price_text == want.price_text
        assert trades.price.tolist() == want.price.tolist()
        assert trades.quantity_text == want.quantity_text
        assert trades.time_ms.tolist() == want.time_ms.tolist()
        assert trades.is_buyer_maker.tolist() == want.is_buyer_maker.tolist()
    assert _trades_of([shuffled])[0].trade_id.tolist() == [7, 8, 9]
