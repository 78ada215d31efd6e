"""Segments of a candle series between long holes: no indicator is computed across one.

A hole of more than ``settings.INDICATOR_MAX_GAP_BARS`` missing bars between two consecutive stored candles (an
outage longer than the REST backfill reaches, live candles resuming years after the imported history, two archive
ranges months apart) ends a segment. Every indicator restarts its warm-up after it: its value is empty until it
has enough bars of its own in the new segment, then equals that of a fresh series starting at the segment's first
candle. Shorter holes are bridged (the indicators are bar-indexed: the bars on either side are consecutive).

The live and imported indicators (``analytics.indicators.compute_rows``), the backtests (``analytics.bars.Bars``)
and the prediction features (``prediction.features``) all split with :func:`segments` and compute with
:func:`per_segment`, so they agree on where a series restarts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from django.conf import settings

Bounds = list[tuple[int, int]]


def segments(open_times: npt.ArrayLike, step: int, max_gap: int | None = None) -> Bounds:
    """``[start, stop)`` index ranges of ``open_times`` (ascending numbers, e.g. epoch ms) between holes.

    A new segment starts where consecutive open times differ by more than ``(max_gap + 1) * step`` (more than
    ``max_gap`` bars missing); ``step`` is the interval in the unit of ``open_times``; ``max_gap`` defaults to
    ``settings.INDICATOR_MAX_GAP_BARS``. An empty series has no segment.
    """
    gap = settings.INDICATOR_MAX_GAP_BARS if max_gap is None else max_gap
    if gap < 0 or step <= 0:
        raise ValueError(f"need max_gap >= 0 and step > 0, got max_gap={gap} step={step}")
    times = np.asarray(open_times, dtype=np.int64)
    if len(times) == 0:
        return []
    cuts = (np.flatnonzero(np.diff(times) > (gap + 1) * step) + 1).tolist()
    return list(itertools.pairwise([0, *cuts, len(times)]))


def per_segment(fn: Callable[..., Any], values: Any, bounds: Bounds, *args: Any) -> Any:
    """``fn(values, *args)`` computed on each segment of ``values`` on its own, joined back in order.

    ``fn`` is an indicator: it maps a sequence (a list of ``Decimal`` or a float array) to one value per input, or
    to a tuple of such (MACD, Bollinger). With one segment (or none) it is ``fn(values, *args)`` unchanged.
    """
    if len(bounds) <= 1:
        return fn(values, *args)
    parts = [fn(values[a:b], *args) for a, b in bounds]
    if isinstance(parts[0], tuple):
        return tuple(_join(list(column)) for column in zip(*parts, strict=True))
    return _join(parts)


def _join(parts: list[Any]) -> Any:
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return list(itertools.chain.from_iterable(parts))
