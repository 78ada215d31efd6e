"""The one Unix epoch and the one converter between aware UTC datetimes and epoch milliseconds (or microseconds).

Exact integer arithmetic on ``timedelta``s, never a float round trip through ``timestamp()`` (a float of an epoch
in seconds keeps only about a microsecond, and its rounding is not the floor). Conversions to integers floor
(toward the past, also before 1970): the millisecond or microsecond that contains the moment. In the foundation
package so every layer (ingest included) uses the same one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_US = timedelta(microseconds=1)


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds to an aware UTC datetime (exact)."""
    return EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(value: datetime) -> int:
    """An aware datetime to epoch milliseconds, floored (the millisecond that contains it)."""
    return (value - EPOCH) // _MS


def us_to_datetime(us: int) -> datetime:
    """Epoch microseconds to an aware UTC datetime (exact)."""
    return EPOCH + timedelta(microseconds=us)


def datetime_to_us(value: datetime) -> int:
    """An aware datetime to epoch microseconds (exact: a datetime holds whole microseconds)."""
    return (value - EPOCH) // _US
