"""The consumer watchdog's verdicts on a hand-driven clock (broker-backed cases: test_consumer_reliability)."""

from __future__ import annotations

import pytest

from analytics.watchdog import Watchdog

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_member_with_partitions_and_work_but_no_commit_is_stalled_after_the_bound():
    clock = Clock()
    dog = Watchdog(10, clock)
    dog.observe(assigned=3, pending=500)
    clock.now += 10
    assert dog.verdict() is None  # at the bound, not past it
    clock.now += 1
    why = dog.verdict()
    assert why is not None
    assert "no commit progress for 11 s with 500 records waiting on 3 partitions" in why
    assert dog.snapshot()["stalled"] is True
    dog.committed()
    assert dog.verdict() is None
    snapshot = dog.snapshot()
    assert snapshot["assigned_partitions"] == 3
    assert snapshot["last_commit_at"] is not None
    assert snapshot["no_progress_s"] == 0.0


def test_an_idle_member_with_nothing_waiting_is_never_stalled():
    clock = Clock()
    dog = Watchdog(10, clock)
    dog.observe(assigned=6, pending=0)
    for _ in range(10):
        clock.now += 100
        dog.observe(assigned=6, pending=0)
        assert dog.verdict() is None


def test_a_member_without_partitions_is_stalled_only_while_the_group_makes_no_progress():
    clock = Clock()
    dog = Watchdog(10, clock)
    dog.observe(assigned=0, pending=0)
    clock.now += 5
    assert dog.unassigned_for() == 5
    dog.observe_group({0: 5}, lag=100)
    clock.now += 6
    why = dog.verdict()
    assert why is not None
    assert "no partitions assigned for 11 s" in why
    assert "100 records waiting" in why
    dog.observe_group({0: 50}, lag=60)  # another member commits: this one is an idle extra, not stalled
    assert dog.verdict() is None
    clock.now += 5
    dog.observe_group({0: 110}, lag=0)
    clock.now += 50
    dog.observe_group({0: 110}, lag=0)  # nothing waits: fine however long
    assert dog.verdict() is None
    assert dog.snapshot()["stalled"] is False


def test_unknown_group_lag_counts_as_waiting_and_a_new_assignment_restarts_the_bound():
    clock = Clock()
    dog = Watchdog(10, clock)
    dog.observe(assigned=0, pending=0)
    clock.now += 11
    assert "an unknown number of records" in (dog.verdict() or "")
    dog.observe(assigned=2, pending=10)
    assert dog.verdict() is None
    assert dog.unassigned_for() == 0
    clock.now += 11
    assert dog.verdict() is not None
    dog.observe(assigned=0, pending=0)  # lost its partitions: a fresh unassigned period
    assert dog.verdict() is None


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        Watchdog(0)
