"""The indicator registry (analytics.indicator_units): each unit's streaming ``update`` gives, close by close, the
exact values of its batch form to the digit; ``reset`` starts a fresh series; the registry declares what is
stored and the warm-up history the stored indicators had before the registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from analytics import indicator_units as units
from analytics.bars import Bars
from analytics.indicator_units.base import Indicator
from analytics.indicators import compute_rows
from tests.analytics.test_indicators_vectorised import real_closes

CLOSES = real_closes(2)[-900:]  # real BTCUSDT hourly closes
FLAT = [Decimal("5")] * 240  # no change at all: RSI 50, zero-width bands


def _streamed(unit: Indicator, values: list[Decimal]) -> list[object]:
    return [unit.update(v) for v in values]


def _batch(unit: Indicator, values: list[Decimal]) -> list[object]:
    out = unit.compute(values)
    return list(zip(*out, strict=True)) if isinstance(out, tuple) else list(out)


@pytest.mark.parametrize("unit", units.stored_units([7, 25, 99]), ids=repr)
@pytest.mark.parametrize("values", [CLOSES, FLAT], ids=["btcusdt", "flat"])
def test_streaming_updates_equal_the_batch_form_to_the_digit(unit: Indicator, values: list[Decimal]) -> None:
    unit.reset()  # the same unit objects serve every parametrisation
    streamed = _streamed(unit, values)
    assert streamed == _batch(unit, values)
    defined = [all(x is not None for x in v) if isinstance(v, tuple) else v is not None for v in streamed]
    assert defined.index(True) == unit.warmup  # every output from the warm-up on
    initialized = unit.initialized
    unit.reset()
    assert (initialized, unit.initialized) == (True, False)
    assert _streamed(unit, values[100:]) == _batch(unit, values[100:])


def test_the_registry_holds_the_five_indicators_and_their_stored_columns():
    assert units.ORDER == ["sma", "ema", "rsi", "macd", "bollinger"]
    assert units.columns() == [
        "sma", "ema", "rsi", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower",
    ]  # fmt: skip
    with pytest.raises(KeyError, match="unknown indicator 'vwma'"):
        units.get("vwma")


@pytest.mark.parametrize("periods", [[7, 25, 99], [1], [3, 200]])
def test_the_warm_up_history_is_the_former_formula(periods: list[int]) -> None:
    assert units.history(periods) == max(5 * max(periods), 5 * 26 + 9, 5 * 14, 20)


def test_bars_reach_every_registered_indicator_by_name():
    closes = np.array([float(c) for c in CLOSES])
    bars = Bars("1h", np.arange(len(closes), dtype=np.int64) * 3_600_000, closes, closes, closes, closes)
    for name in units.ORDER:
        args = (20,) if units.get(name).per_period else ()
        got, want = bars.indicator(name, *args), units.get(name)(*args).compute_array(closes)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_row_holds_every_stored_column_even_without_moving_average_periods():
    times = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=i) for i in range(60)]
    row = compute_rows(times, CLOSES[:60], [])[-1]
    assert list(row.values) == units.columns()
    assert (row.sma, row.ema) == ({}, {})
    assert row.rsi is not None
    assert row.bb_lower is not None
