"""The per-partition invalid-message limit (sliding ratio and consecutive cap), without servers."""

from __future__ import annotations

import pytest

from analytics.dlq import DlqLimit, InvalidMessageLimiter, InvalidMessageLimitError

pytestmark = pytest.mark.unit


def test_isolated_invalid_records_never_trip_the_limit():
    limiter = InvalidMessageLimiter(DlqLimit(max_invalid_ratio=0.5, window=100, min_records=10, max_consecutive=5))
    for offset in range(10_000):
        if offset % 3 == 0:
            limiter.invalid(0, offset, "bad")
        else:
            limiter.valid(0)
    assert limiter.counts(0) == (100, 34, 1)  # offsets 9900-9999 hold 34 multiples of 3, 9999 last


def test_the_ratio_is_judged_over_a_sliding_window_once_it_holds_min_records():
    limiter = InvalidMessageLimiter(DlqLimit(max_invalid_ratio=0.5, window=10, min_records=4, max_consecutive=None))
    limiter.invalid(0, 0, "bad")
    limiter.invalid(0, 1, "bad")
    limiter.invalid(0, 2, "bad")  # 3 of 3, but fewer than min_records: not judged yet
    limiter.valid(0, 3)
    assert limiter.counts(0) == (6, 3, 0)
    limiter.valid(0, 10)  # the old invalid records slide out of the window
    assert limiter.counts(0) == (10, 0, 0)
    for offset in range(5):
        limiter.invalid(0, offset, "bad")  # 5 of 10: at the limit, not over
    with pytest.raises(InvalidMessageLimitError, match=r"6 of the last 10 records on partition 0 are invalid"):
        limiter.invalid(0, 99, "bad schema")


def test_the_consecutive_cap_trips_before_the_window_fills():
    limiter = InvalidMessageLimiter(DlqLimit(max_invalid_ratio=None, window=1000, min_records=1000, max_consecutive=3))
    for offset in range(3):
        limiter.invalid(1, offset, "bad")
    limiter.valid(1)
    for offset in range(3):
        limiter.invalid(1, offset, "bad")
    with pytest.raises(InvalidMessageLimitError, match=r"4 consecutive invalid records on partition 1.*last reason: x"):
        limiter.invalid(1, 7, "x")


def test_partitions_are_counted_apart_and_forgotten_when_lost():
    limiter = InvalidMessageLimiter(DlqLimit(max_invalid_ratio=None, window=10, min_records=1, max_consecutive=2))
    for partition in (0, 1, 2):
        limiter.invalid(partition, 0, "bad")
        limiter.invalid(partition, 1, "bad")
    limiter.retain([1])
    assert limiter.counts(0) == (0, 0, 0)
    assert limiter.counts(1) == (2, 2, 2)
    limiter.invalid(0, 2, "bad")  # partition 0 starts a fresh count
    with pytest.raises(InvalidMessageLimitError):
        limiter.invalid(1, 2, "bad")


def test_invalid_records_sliding_out_leave_the_window_count_exact():
    limiter = InvalidMessageLimiter(DlqLimit(max_invalid_ratio=None, window=3, min_records=1, max_consecutive=None))
    for offset in range(10):
        limiter.invalid(0, offset, "bad")
    assert limiter.counts(0) == (3, 3, 10)
    limiter.valid(0, 2)
    assert limiter.counts(0) == (3, 1, 0)


def test_valid_runs_longer_than_the_window_reset_it():
    limiter = InvalidMessageLimiter(DlqLimit(window=5, min_records=5))
    limiter.invalid(0, 0, "bad")
    limiter.valid(0, 0)
    limiter.valid(0, 50)
    assert limiter.counts(0) == (5, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_invalid_ratio": 0}, "max_invalid_ratio"),
        ({"max_invalid_ratio": 1.5}, "max_invalid_ratio"),
        ({"window": 0}, "window"),
        ({"window": 10, "min_records": 11}, "min_records"),
        ({"min_records": 0}, "min_records"),
        ({"max_consecutive": 0}, "max_consecutive"),
    ],
)
def test_nonsense_limits_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DlqLimit(**kwargs)
