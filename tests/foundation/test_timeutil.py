"""The one epoch and ms/us converter (cryptoproject/timeutil.py): exact, floored, aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from cryptoproject.timeutil import EPOCH, datetime_to_ms, datetime_to_us, ms_to_datetime, us_to_datetime


def test_round_trips_are_exact() -> None:
    moment = datetime(2024, 8, 9, 0, 0, 55, 342000, tzinfo=UTC)
    assert datetime_to_ms(moment) == 1_723_161_655_342
    assert ms_to_datetime(1_723_161_655_342) == moment
    assert ms_to_datetime(0) == EPOCH == datetime(1970, 1, 1, tzinfo=UTC)
    assert datetime_to_us(moment) == 1_723_161_655_342_000
    assert us_to_datetime(1_723_161_655_342_001) == moment + timedelta(microseconds=1)
    late = datetime(2099, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert datetime_to_ms(late) == 4_102_444_799_999
    assert ms_to_datetime(datetime_to_ms(late)) == late


def test_fractions_floor_toward_the_past_on_both_sides_of_the_epoch() -> None:
    assert datetime_to_ms(EPOCH + timedelta(microseconds=1999)) == 1
    assert datetime_to_ms(EPOCH - timedelta(microseconds=1)) == -1
    assert datetime_to_ms(EPOCH - timedelta(microseconds=1000)) == -1
    assert datetime_to_ms(EPOCH - timedelta(microseconds=1001)) == -2
    assert ms_to_datetime(-1) == EPOCH - timedelta(milliseconds=1)
    assert datetime_to_us(EPOCH - timedelta(microseconds=7)) == -7


def test_results_are_utc_and_offsets_are_honoured() -> None:
    assert ms_to_datetime(5).tzinfo is UTC
    plus_two = datetime(2024, 8, 9, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert datetime_to_ms(plus_two) == datetime_to_ms(datetime(2024, 8, 9, tzinfo=UTC))
