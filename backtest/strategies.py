"""Strategies: each turns bars into a target position per bar (True = long), decided on that bar's close.

A strategy is a function registered with :func:`strategy`, which names it and declares its parameters with their
defaults (the type of the default is the parameter's type). Adding one never touches the engine::

    @strategy("close_above_sma", period=50)
    def close_above_sma(bars: Bars, period: int) -> BoolArray:
        return bars.close > bars.indicator("sma", period)

Rules a strategy keeps: read indicators through ``bars.indicator`` (the live dashboard's implementation, memoised
for sweeps) and use only values up to each bar (every indicator there is causal; the no-look-ahead property test
in tests/backtest/test_engine.py runs every registered strategy). A comparison with ``NaN`` (an indicator not yet
defined) is False, so a strategy is flat until its indicators exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtest.engine import Bars, BoolArray

Number = int | float
SignalFunction = Callable[..., BoolArray]
Check = Callable[[dict[str, Number]], None]
# Bounds of any parameter, before a strategy's own check: a window or period longer than any run's bars, or a
# threshold of 1e300, means nothing and only makes the worker allocate or overflow.
MAX_INT_PARAM = 100_000
MAX_ABS_FLOAT_PARAM = 1e6


class ParamValueError(ValueError):
    """A strategy parameter that is not a number of its type, or out of bounds; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its name, parameter defaults, optional cross-parameter check and description."""

    name: str
    func: SignalFunction
    defaults: dict[str, Number]
    check: Check | None
    description: str

    def params(self, given: Mapping[str, Any] | None = None) -> dict[str, Number]:
        """The defaults overridden by ``given`` (values may be strings, as from a command line), validated."""
        params = dict(self.defaults)
        for key, raw in (given or {}).items():
            if key not in self.defaults:
                known = ", ".join(self.defaults) or "none"
                raise ValueError(f"{self.name}: unknown parameter {key!r} (parameters: {known})")
            params[key] = _coerce(self.name, key, raw, self.defaults[key])
        if self.check is not None:
            self.check(params)
        return params

    def targets(self, bars: Bars, params: Mapping[str, Any] | None = None) -> BoolArray:
        """The target position per bar, as a boolean array."""
        checked = self.params(params)
        out = np.asarray(self.func(bars, **checked), dtype=np.bool_)
        if out.shape != (len(bars),):
            raise ValueError(f"{self.name} returned {out.shape} targets for {len(bars)} bars")
        return out


def _coerce(name: str, key: str, raw: Any, default: Number) -> Number:
    integer = isinstance(default, int) and not isinstance(default, bool)
    try:
        if integer:
            value: Number = int(raw) if not isinstance(raw, float) or raw.is_integer() else _not_int(raw)
        else:
            value = float(raw)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(inf), from a JSON 1e400
        kind = "an integer" if integer else "a number"
        raise ParamValueError(key, f"{name}: parameter {key!r} must be {kind}, not {raw!r}") from exc
    if isinstance(value, float) and not np.isfinite(value):
        raise ParamValueError(key, f"{name}: parameter {key!r} must be finite, not {raw!r}")
    bound = MAX_INT_PARAM if integer else MAX_ABS_FLOAT_PARAM
    if not -bound <= value <= bound:
        raise ParamValueError(key, f"{name}: parameter {key!r} must be between {-bound:g} and {bound:g}, not {raw!r}")
    return value


def _not_int(raw: float) -> int:
    raise ValueError(f"{raw} is not an integer")


STRATEGIES: dict[str, Strategy] = {}


def strategy(
    name: str, *, check: Check | None = None, **defaults: Number
) -> Callable[[SignalFunction], SignalFunction]:
    """Register ``func`` under ``name`` with the parameter ``defaults`` (and an optional ``check``)."""

    def register(func: SignalFunction) -> SignalFunction:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is already registered")
        doc = (func.__doc__ or "").strip().splitlines()
        STRATEGIES[name] = Strategy(name, func, dict(defaults), check, doc[0] if doc else "")
        return func

    return register


def get_strategy(name: str) -> Strategy:
    """The registered strategy ``name``; a ``ValueError`` lists the known ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}") from None


def _positive(*keys: str) -> Check:
    def check(params: dict[str, Number]) -> None:
        for key in keys:
            if params[key] <= 0:
                raise ValueError(f"parameter {key!r} must be positive, got {params[key]}")

    return check


def _fast_below_slow(params: dict[str, Number]) -> None:
    _positive(*params)(params)
    if params["fast"] >= params["slow"]:
        raise ValueError(f"fast ({params['fast']}) must be shorter than slow ({params['slow']})")


def _hold_between(enter: BoolArray, leave: BoolArray) -> BoolArray:
    """Long from a bar where ``enter`` holds until a bar where ``leave`` holds (and not ``enter``)."""
    state = np.where(enter, 1.0, np.where(leave, 0.0, np.nan))
    # Forward-fill the last decision (causal: each bar sees only earlier decisions); none yet means flat.
    index = np.where(np.isnan(state), 0, np.arange(len(state)))
    np.maximum.accumulate(index, out=index)
    filled = state[index]
    return np.nan_to_num(filled, nan=0.0) > 0


@strategy("sma_cross", check=_fast_below_slow, fast=10, slow=30)
def sma_cross(bars: Bars, fast: int, slow: int) -> BoolArray:
    """Long while SMA(close, fast) > SMA(close, slow), flat otherwise (and until both exist)."""
    return np.asarray(bars.indicator("sma", fast) > bars.indicator("sma", slow))


@strategy("ema_cross", check=_fast_below_slow, fast=12, slow=26)
def ema_cross(bars: Bars, fast: int, slow: int) -> BoolArray:
    """Long while EMA(close, fast) > EMA(close, slow), flat otherwise (and until both exist)."""
    return np.asarray(bars.indicator("ema", fast) > bars.indicator("ema", slow))


def _rsi_check(params: dict[str, Number]) -> None:
    _positive("period")(params)
    if not 0 <= params["low"] < params["high"] <= 100:
        raise ValueError(f"need 0 <= low < high <= 100, got low={params['low']} high={params['high']}")


@strategy("rsi_reversion", check=_rsi_check, period=14, low=30.0, high=70.0)
def rsi_reversion(bars: Bars, period: int, low: float, high: float) -> BoolArray:
    """Buy when RSI(period) falls below ``low``, sell when it rises above ``high``, hold in between."""
    value = bars.indicator("rsi", period)
    return _hold_between(value < low, value > high)


def _macd_check(params: dict[str, Number]) -> None:
    _positive("fast", "slow", "signal")(params)
    _fast_below_slow({"fast": params["fast"], "slow": params["slow"]})


@strategy("macd_cross", check=_macd_check, fast=12, slow=26, signal=9)
def macd_cross(bars: Bars, fast: int, slow: int, signal: int) -> BoolArray:
    """Long while the MACD line is above its signal line, flat otherwise (and until both exist)."""
    line, sig, _ = bars.indicator("macd", fast, slow, signal)
    return np.asarray(line > sig)


@strategy("bollinger_breakout", check=_positive("period", "k"), period=20, k=2.0)
def bollinger_breakout(bars: Bars, period: int, k: float) -> BoolArray:
    """Buy when the close breaks above the upper band, sell when it falls back below the middle band."""
    upper, middle, _ = bars.indicator("bollinger", period, k)
    return _hold_between(bars.close > upper, bars.close < middle)
