"""The indicator registry: every :class:`~analytics.indicator_units.base.Indicator` subclass defined in a module of
this package, by its ``name`` (docs/ADDING_AN_INDICATOR.md).

The modules are found and imported here, so adding an indicator is adding its module (and, when it stores a new
column, a migration): the stored indicators (:func:`stored_units`), their ``IndicatorPoint`` columns
(:func:`columns`), the warm-up history (:func:`history`) and the backtests' ``Bars.indicator`` all read this
registry.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Sequence
from typing import Any

from analytics.indicator_units.base import Indicator

REGISTRY: dict[str, type[Indicator]] = {}


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    # Every concrete subclass, however deep (PeriodIndicator is an abstract base, not an indicator).
    stack = list(Indicator.__subclasses__())
    while stack:
        unit = stack.pop()
        stack.extend(unit.__subclasses__())
        if inspect.isabstract(unit):
            continue
        if unit.name in REGISTRY and REGISTRY[unit.name] is not unit:
            raise ImportError(f"two indicators named {unit.name!r}: {REGISTRY[unit.name]} and {unit}")
        REGISTRY[unit.name] = unit  # type: ignore[type-abstract]  # the units are concrete


_discover()
#: the registered names by ``rank`` (then name): the order of the columns in a stored row, a push and an API item
ORDER = sorted(REGISTRY, key=lambda name: (REGISTRY[name].rank, name))


def get(name: str) -> type[Indicator]:
    """The unit class registered as ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown indicator {name!r} (known: {', '.join(ORDER)})") from None


def stored_units(periods: Sequence[int]) -> list[Indicator]:
    """The indicators computed and stored for every candle: each ``per_period`` unit once per period of
    ``INDICATOR_MA_PERIODS``, every other unit with its default parameters."""
    out: list[Indicator] = []
    for name in ORDER:
        unit = REGISTRY[name]
        out += [unit(p) for p in periods] if unit.per_period else [unit()]  # type: ignore[call-arg]
    return out


def columns() -> list[str]:
    """The ``IndicatorPoint`` columns the registry stores, in :data:`ORDER` (a ``per_period`` unit's JSON column
    is its ``name``)."""
    return [c for name in ORDER for c in ((name,) if REGISTRY[name].per_period else REGISTRY[name].outputs)]


def empty_values() -> dict[str, Any]:
    """A new row of :func:`columns` with no value yet: ``None``, ``{}`` for a ``per_period`` column."""
    return {c: {} if c in REGISTRY and REGISTRY[c].per_period else None for c in columns()}


def history(periods: Sequence[int]) -> int:
    """The candles to load before a recomputed one: the longest history any stored indicator needs."""
    return max(unit.history for unit in stored_units(periods))
