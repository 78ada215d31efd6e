"""The engine against the contract of docs/BACKTESTING.md: hand-worked cases, the per-bar reference loop, and
the no-look-ahead property for every registered strategy."""

from __future__ import annotations

import itertools
import json
import math
import statistics

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest.engine import METRICS, Bars, simulate
from backtest.reference import simulate_loop
from backtest.strategies import STRATEGIES, get_strategy, strategy
from tests.backtest.helpers import HOUR_MS, START, make_bars

pytestmark = pytest.mark.unit

# 12 bars: each opens half a point above the previous close.
CLOSES = [10.0, 11.0, 12.0, 13.0, 12.0, 11.0, 10.0, 9.0, 10.0, 11.0, 12.0, 13.0]
OPENS = [10.0] + [c + 0.5 for c in CLOSES[:-1]]


def test_sma_cross_on_twelve_bars_worked_by_hand():
    bars = make_bars(OPENS, CLOSES)
    fee, cash = 0.01, 1000.0
    # SMA(2) vs SMA(3) on the closes, from t = 2 (slow - 1):
    #   t=2: 11.5 > 11      long     t=5: 11.5 < 12     flat     t=8:  9.5 < 9.667  flat
    #   t=3: 12.5 > 12      long     t=6: 10.5 < 11     flat     t=9:  10.5 > 10    long
    #   t=4: 12.5 > 12.333  long     t=7:  9.5 < 10     flat     t=10: 11.5 > 11    long, t=11: long (no order)
    expected_targets = [False, False, True, True, True, False, False, False, False, True, True, True]
    result = simulate(bars, get_strategy("sma_cross").targets(bars, {"fast": 2, "slow": 3}), cash=cash, fee=fee)
    assert result.targets.tolist() == expected_targets
    # Signals on the close of t fill at the open of t+1: buy at bar 3's open (12.5), sell at bar 6's (11.5),
    # buy again at bar 10's (11.5); still long at the end, valued at the last close (13) with no fee.
    assert result.position.tolist() == [False] * 3 + [True] * 3 + [False] * 4 + [True] * 2
    qty1 = 1000 / (12.5 * 1.01)
    cash1 = qty1 * 11.5 * 0.99
    qty2 = cash1 / (11.5 * 1.01)
    final = qty2 * 13
    equity = [1000, 1000, 1000, qty1 * 13, qty1 * 12, qty1 * 11, cash1, cash1, cash1, cash1, qty2 * 12, qty2 * 13]
    assert result.equity.tolist() == pytest.approx(equity, rel=1e-12)
    fees = qty1 * 12.5 * 0.01 + qty1 * 11.5 * 0.01 + qty2 * 11.5 * 0.01
    m = result.metrics
    assert m["final_equity"] == pytest.approx(final, rel=1e-12)
    assert m["total_return"] == pytest.approx(final / 1000 - 1, rel=1e-12)
    assert m["fees"] == pytest.approx(fees, rel=1e-12)
    assert m["trades"] == 2
    assert m["buy_and_hold_return"] == pytest.approx(13 / 10 - 1)
    assert m["max_drawdown"] == pytest.approx(1 - qty1 * 11 / (qty1 * 13), rel=1e-12)
    assert m["exposure"] == pytest.approx(5 / 12)
    assert m["win_rate"] == pytest.approx(0.5)  # the first round trip loses, the open one gains
    assert m["profit_factor"] == pytest.approx((final - cash1) / (1000 - cash1), rel=1e-9)
    returns = [b / a - 1 for a, b in itertools.pairwise(equity)]
    per_year = 365 * 86400 / 3600
    assert m["sharpe"] == pytest.approx(statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(per_year))
    downside = math.sqrt(sum(min(r, 0) ** 2 for r in returns) / len(returns))
    assert m["sortino"] == pytest.approx(statistics.mean(returns) / downside * math.sqrt(per_year))
    cagr = (final / 1000) ** (per_year / 12) - 1
    assert m["cagr"] == pytest.approx(cagr, rel=1e-9)
    assert m["calmar"] == pytest.approx(cagr / m["max_drawdown"], rel=1e-9)
    assert [t.as_json() for t in result.trades] == [
        {"entry_time": _ms(3), "entry_price": 12.5, "exit_time": _ms(6), "exit_price": 11.5,
         "return": pytest.approx(11.5 * 0.99 / (12.5 * 1.01) - 1)},
        {"entry_time": _ms(10), "entry_price": 11.5, "exit_time": _ms(11), "exit_price": 13.0,
         "return": pytest.approx(13 / (11.5 * 1.01) - 1)},
    ]  # fmt: skip


def _ms(bar: int) -> int:
    return int(START.timestamp() * 1000) + bar * HOUR_MS


def test_no_order_on_the_last_bar_and_flat_on_the_first():
    bars = make_bars([10, 10, 10], [10, 10, 20])
    result = simulate(bars, [False, False, True], cash=100, fee=0)
    assert result.metrics["trades"] == 0
    assert result.equity.tolist() == [100, 100, 100]
    # A signal on bar 0 fills at bar 1's open; bar 0 itself is always flat.
    result = simulate(bars, [True, True, True], cash=100, fee=0)
    assert result.position.tolist() == [False, True, True]
    assert result.equity.tolist() == [100, 100, 200]
    assert result.metrics["total_return"] == 1.0


def test_undefined_ratios_are_null_and_the_json_layout():
    bars = make_bars([10, 11, 12], [10, 11, 12])
    result = simulate(bars, [False] * 3, cash=100, fee=0.001, params={"fast": 2})
    m = result.metrics
    assert m["sharpe"] is None
    assert m["sortino"] is None
    assert m["calmar"] is None
    assert m["win_rate"] is None
    assert m["profit_factor"] is None
    assert m["trades"] == 0
    assert m["total_return"] == 0
    assert m["fees"] == 0
    body = json.loads(json.dumps(result.as_json(), allow_nan=False))
    assert set(body) == {"metrics", "equity", "trades", "params", "bars"}
    assert set(body["metrics"]) == set(METRICS)
    assert body["equity"] == [[_ms(0), 100.0], [_ms(1), 100.0], [_ms(2), 100.0]]
    assert body["trades"] == []
    assert body["params"] == {"fast": 2}
    assert body["bars"] == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"cash": 0}, "cash must be positive"), ({"fee": 1}, "fee must be in"), ({"targets": [True]}, "expected 2")],
)
def test_bad_arguments_are_refused(kwargs, message):
    bars = make_bars([1, 1], [1, 1])
    args = {"targets": [False, False], **kwargs}
    with pytest.raises(ValueError, match=message):
        simulate(bars, **args)


def test_no_bars_is_an_error():
    with pytest.raises(ValueError, match="no bars"):
        simulate(make_bars([], []), [])


@settings(max_examples=200, deadline=None)
@given(
    prices=st.lists(st.floats(1, 1000), min_size=2, max_size=80),
    targets=st.lists(st.booleans(), min_size=80, max_size=80),
    fee=st.sampled_from([0.0, 0.001, 0.01]),
)
def test_vectorised_engine_matches_the_per_bar_loop(prices, targets, fee):
    opens = prices
    closes = prices[1:] + prices[:1]
    n = len(prices)
    result = simulate(make_bars(opens, closes), targets[:n], cash=10_000, fee=fee)
    equity, trades, fees = simulate_loop(opens, closes, targets[:n], 10_000, fee)
    assert result.equity.tolist() == pytest.approx(equity, rel=1e-9)
    assert [(t.entry_time, t.exit_time) for t in result.trades] == [
        (_ms(e), _ms(x if x is not None else n - 1)) for e, x in trades
    ]
    assert result.fees == pytest.approx(fees, rel=1e-9, abs=1e-9)


def _walk(steps: list[float]) -> np.ndarray:
    return 1000 * np.exp(np.cumsum(steps))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.floats(-0.05, 0.05), min_size=60, max_size=160),
    cut=st.integers(1, 159),
    name=st.sampled_from(sorted(STRATEGIES)),
)
def test_appending_future_bars_never_changes_the_past(steps, cut, name):
    """No look-ahead: a strategy's signals and the equity up to bar t do not depend on any bar after t."""
    closes = _walk(steps)
    opens = np.concatenate(([closes[0]], closes[:-1]))
    full = make_bars(opens, closes)
    cut = min(cut, len(full) - 1)
    past = full.slice(0, cut)
    strat = get_strategy(name)
    params = {"fast": 3, "slow": 8} if "fast" in strat.defaults else {"period": 5}
    if name == "macd_cross":
        params["signal"] = 4
    full_run = simulate(full, strat.targets(full, params))
    past_run = simulate(past, strat.targets(past, params))
    assert past_run.targets.tolist() == full_run.targets[:cut].tolist()
    assert past_run.equity.tolist() == full_run.equity[:cut].tolist()


def test_a_user_strategy_registers_without_touching_the_engine():
    @strategy("test_close_above_sma", period=3)
    def close_above_sma(bars: Bars, period: int) -> np.ndarray:
        """Long while the close is above its SMA."""
        return bars.close > bars.indicator("sma", period)

    try:
        bars = make_bars(OPENS, CLOSES)
        registered = get_strategy("test_close_above_sma")
        assert registered.description == "Long while the close is above its SMA."
        result = simulate(bars, registered.targets(bars, {"period": "3"}))
        assert result.metrics["trades"] == 2
        with pytest.raises(ValueError, match="already registered"):
            strategy("test_close_above_sma")(close_above_sma)
    finally:
        STRATEGIES.pop("test_close_above_sma", None)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("sma_cross", {"fast": 30, "slow": 10}, "fast .30. must be shorter than slow"),
        ("sma_cross", {"fast": "x"}, "'fast' must be an integer"),
        ("sma_cross", {"fast": 2.5}, "'fast' must be an integer"),
        ("sma_cross", {"speed": 2}, "unknown parameter 'speed'"),
        ("sma_cross", {"fast": 0}, "'fast' must be positive"),
        ("rsi_reversion", {"low": 80}, "need 0 <= low < high <= 100"),
        ("bollinger_breakout", {"k": "nan"}, "'k' must be finite"),
        ("macd_cross", {"signal": 0}, "'signal' must be positive"),
        ("nope", {}, "unknown strategy 'nope'"),
    ],
)
def test_parameters_are_validated(name, params, message):
    with pytest.raises(ValueError, match=message):
        get_strategy(name).params(params)


def test_rsi_reversion_holds_between_its_thresholds():
    # Falls (RSI 0 < 30: buy), then rises (RSI 100 > 70: sell): long from the first defined low until the high.
    closes = [10, 9, 8, 7, 6, 7, 8, 9, 10, 11]
    bars = make_bars(closes, closes)
    targets = get_strategy("rsi_reversion").targets(bars, {"period": 2})
    # RSI(2): t=2..4 average gain 0, loss 1 -> 0 (< 30: long); t=5 (+1): gain 0.5, loss 0.5 -> 50 (hold);
    # t=6 (+1): gain 0.75, loss 0.25 -> 75 (> 70: flat), and it stays above 70 while the closes rise.
    assert targets.tolist() == [False, False, True, True, True, True, False, False, False, False]


def test_bollinger_breakout_enters_above_the_upper_band_and_leaves_below_the_middle():
    closes = [10, 10, 10, 14, 15, 13, 9, 9]
    bars = make_bars(closes, closes)
    targets = get_strategy("bollinger_breakout").targets(bars, {"period": 3, "k": 1.0})
    # t=3: mean 11.33, sd 1.886 -> upper 13.22 < 14: enter; t=4: mean 13, upper 15.16 > 15: hold (above middle);
    # t=5: mean 14, 13 < 14: leave; t=6, 7: below the middle: flat.
    assert targets.tolist() == [False, False, False, True, True, False, False, False]


def test_an_sma_strategy_does_not_carry_its_averages_across_a_long_hole():
    """A backtest over a range with a hole of more than INDICATOR_MAX_GAP_BARS bars (an outage, two imports
    months apart): after it, the SMAs and so the targets are those of the bars after the hole alone."""
    closes = [100.0 + 10 * math.sin(i / 5) for i in range(120)]
    bars = make_bars(closes, closes)
    cut = 60
    bars.open_time[cut:] += 30 * HOUR_MS  # 30 missing bars: more than the default 24
    sma_cross = get_strategy("sma_cross")
    params = {"fast": 3, "slow": 8}
    slow = bars.indicator("sma", 8)
    assert np.isnan(slow[cut : cut + 7]).all()  # warming up again on the bars after the hole
    after = bars.slice(cut)
    np.testing.assert_array_equal(slow[cut:], after.indicator("sma", 8))
    targets = sma_cross.targets(bars, params)
    assert not targets[cut : cut + 7].any()  # flat until both averages exist again
    np.testing.assert_array_equal(targets[cut:], sma_cross.targets(after, params))
    np.testing.assert_array_equal(targets[:cut], sma_cross.targets(bars.slice(0, cut), params))
    # A hole of 24 missing bars is bridged: the same SMAs as without the hole.
    bridged = make_bars(closes, closes)
    bridged.open_time[cut:] += 24 * HOUR_MS
    np.testing.assert_array_equal(bridged.indicator("sma", 8), make_bars(closes, closes).indicator("sma", 8))
