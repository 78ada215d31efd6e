"""Epoch milliseconds and aware UTC datetimes, exactly (no float round trip), and bucket alignment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analytics.models import INTERVAL_SECONDS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds to an aware UTC datetime (exact: no float round trip)."""
    return EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(value: datetime) -> int:
    """An aware datetime to epoch milliseconds."""
    return (value - EPOCH) // timedelta(milliseconds=1)


def bucket_start(value: datetime, interval: str) -> datetime:
    """The open time of the ``interval`` bucket that contains ``value`` (aligned on the Unix epoch)."""
    step = INTERVAL_SECONDS[interval]
    seconds = (value - EPOCH) // timedelta(seconds=1)
    return EPOCH + timedelta(seconds=seconds - seconds % step)
