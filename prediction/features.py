"""Features and target from stored candles, computed with the platform's own indicator code.

Every feature of bar ``t`` depends only on bars ``<= t`` (the vectorised indicators guarantee it for theirs; the
returns look back by index), so appending later candles never changes an earlier row: the leakage tests check it.
Bars are consecutive rows of the stored series; a gap in the data (an exchange outage) is not filled.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt

from analytics.bars import Bars, load_candles
from analytics.indicators import bollinger_arrays, ema_array, macd_arrays, rsi_array
from analytics.segments import per_segment, segments

FloatArray = npt.NDArray[np.float64]

RETURN_LAGS = (1, 2, 4, 12, 24)
VOLATILITY_WINDOW = 24
VOLUME_WINDOW = 24
RSI_PERIOD = 14
BB_PERIOD = 20
EMA_PERIOD = 50
# Rows before this have indicators still warming up (MACD's signal needs 26 + 9 - 1 bars, the EMA 50); they are
# never trained or tested on.
WARMUP = 50
# Live inference computes features over this many bars up to the last closed one: the EMA/RSI recursions forget
# their seed long before (weight (1 - 2/51)^450 ~ 1e-8), so the values match those over the whole history.
LIVE_LOOKBACK = 500

FEATURES = (
    *(f"ret_{k}" for k in RETURN_LAGS),
    "volatility_24",
    "rsi_14",
    "macd_hist",
    "bb_pct_b",
    "ema_50_gap",
    "volume_z_24",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
)


def load_series(exchange: str, symbol: str, interval: str, start: datetime, end: datetime) -> Bars:
    """The stored candles with ``start <= open_time <= end``, oldest first, with their volume (a model's
    ``data_hash`` is their digest, volume included)."""
    return load_candles(exchange, symbol, interval, start, end, volume=True)


def load_last(exchange: str, symbol: str, interval: str, until: datetime, count: int = LIVE_LOOKBACK) -> Bars:
    """The last ``count`` stored candles with ``open_time <= until`` (live inference: nothing after it)."""
    return load_candles(exchange, symbol, interval, end=until, last=count, volume=True)


def _lagged_return(close: FloatArray, lag: int) -> FloatArray:
    out = np.full(len(close), np.nan)
    if len(close) > lag:
        out[lag:] = np.log(close[lag:] / close[:-lag])
    return out


def _rolling_std(values: FloatArray, window: int) -> tuple[FloatArray, FloatArray]:
    """Rolling mean and population standard deviation: the Bollinger middle band and half its width at k=1."""
    upper, middle, _ = bollinger_arrays(values, window, 1.0)
    return middle, upper - middle


def feature_matrix(series: Bars, step_ms: int | None = None) -> FloatArray:
    """One row per bar, one column per name in :data:`FEATURES` (NaN while an indicator warms up).

    With ``step_ms`` (the interval), each segment between holes of more than ``INDICATOR_MAX_GAP_BARS`` bars is
    computed on its own (:func:`analytics.segments.segments`, the rule of the stored indicators): no return,
    volatility or indicator is computed across a hole; they are NaN until the segment has warmed up, which the
    gradient-boosting model handles natively. Shorter holes are bridged, as in training.
    """
    bounds = segments(series.open_time, step_ms) if step_ms is not None else []
    if len(bounds) > 1:
        return np.asarray(per_segment(_features, series, bounds), dtype=np.float64)
    return _features(series)


def _features(series: Bars) -> FloatArray:
    close, volume = series.close, series.volume
    if volume is None:
        raise ValueError("the features need the volume: load the bars with volume=True")
    r1 = _lagged_return(close, 1)
    columns = [_lagged_return(close, k) for k in RETURN_LAGS]
    # The volatility of 1-bar log returns; r1[0] is NaN, so the window starts at bar 1.
    vol = np.full(len(close), np.nan)
    if len(close) > 1:
        vol[1:] = _rolling_std(r1[1:], VOLATILITY_WINDOW)[1]
    columns.append(vol)
    columns.append(rsi_array(close, RSI_PERIOD) / 100.0)
    columns.append(macd_arrays(close)[2] / close)
    upper, _, lower = bollinger_arrays(close, BB_PERIOD)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = upper - lower
        columns.append(np.where(width > 0, (close - lower) / width, 0.5))
        columns.append(close / ema_array(close, EMA_PERIOD) - 1.0)
        mean, std = _rolling_std(volume, VOLUME_WINDOW)
        # A flat volume window has no spread: z = 0 there, NaN only while the window fills.
        volume_z = np.where(std > 0, (volume - mean) / std, 0.0)
    volume_z[np.isnan(mean)] = np.nan
    columns.append(volume_z)
    seconds = series.open_time // 1000
    hour = (seconds % 86_400) / 3600.0
    dow = ((seconds // 86_400) + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    columns += [
        np.sin(2 * np.pi * hour / 24),
        np.cos(2 * np.pi * hour / 24),
        np.sin(2 * np.pi * dow / 7),
        np.cos(2 * np.pi * dow / 7),
    ]
    return np.column_stack(columns).astype(np.float64) if len(close) else np.empty((0, len(FEATURES)))


def targets(close: FloatArray, horizon: int) -> tuple[FloatArray, FloatArray]:
    """``up[t] = close[t+h] > close[t]`` (1.0/0.0) and the return ``close[t+h] / close[t] - 1``; NaN for the last
    ``h`` bars, whose outcome is not known yet."""
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    up = np.full(len(close), np.nan)
    ret = np.full(len(close), np.nan)
    if len(close) > horizon:
        ret[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
        up[:-horizon] = (close[horizon:] > close[:-horizon]).astype(np.float64)
    return up, ret
