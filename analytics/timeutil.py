"""Bucket alignment of candle intervals; the epoch and the ms converters are :mod:`cryptoproject.timeutil`'s
(re-exported here for the analytics code that imports them from this module)."""

from __future__ import annotations

from datetime import datetime, timedelta

from analytics.models import INTERVAL_SECONDS
from cryptoproject.timeutil import EPOCH, datetime_to_ms, ms_to_datetime

__all__ = ["EPOCH", "bucket_start", "datetime_to_ms", "ms_to_datetime"]


def bucket_start(value: datetime, interval: str) -> datetime:
    """The open time of the ``interval`` bucket that contains ``value`` (aligned on the Unix epoch)."""
    step = INTERVAL_SECONDS[interval]
    seconds = (value - EPOCH) // timedelta(seconds=1)
    return EPOCH + timedelta(seconds=seconds - seconds % step)
