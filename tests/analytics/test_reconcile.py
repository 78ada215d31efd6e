"""A starting analytics worker recomputes every market's recent candles (analytics/apps.py): an ``update_candles``
lost with a SIGKILLed worker (the Redis transport pops a message before recording it as unacknowledged) is made
good. The candles are checked against the independent computation of ``test_candles``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from analytics import series
from analytics.apps import reconcile_on_worker_start
from analytics.models import Candle
from tests.analytics.test_candles import RawTrade, expected_candles, insert, read_trades, stored_candles
from tests.conftest import ChildProcess, wait_for


def _last_minutes(trades: tuple[RawTrade, ...], minutes: int) -> tuple[RawTrade, ...]:
    """The trades of the minute buckets a reconcile of ``minutes`` touches (from the bucket of last - minutes)."""
    last = max(t.time_ms for t in trades)
    first_bucket = (last - minutes * 60_000) // 60_000 * 60_000
    return tuple(t for t in trades if t.time_ms >= first_bucket)


@pytest.mark.django_db
def test_reconcile_recomputes_the_recent_candles_of_every_market_and_only_those() -> None:
    trades = read_trades()  # five minutes of trades
    insert(trades)
    insert(trades[:500], symbol="ETHUSDT")  # a second market: reconciled too, from its own last trade
    assert not Candle.objects.exists()  # every update_candles "lost"

    assert series.reconcile_recent(2) == 2

    want = expected_candles(_last_minutes(trades, 2), "1m")
    got = stored_candles("1m")
    assert got == want
    assert stored_candles("1m", symbol="ETHUSDT") == expected_candles(_last_minutes(trades[:500], 2), "1m")
    # Older minutes are left alone (their tasks are not in doubt).
    older = set(expected_candles(trades, "1m")) - set(want)
    assert older
    assert not older & set(got)


@pytest.mark.django_db
def test_reconcile_of_zero_minutes_does_nothing() -> None:
    insert(read_trades()[:100])
    assert series.reconcile_recent(0) == 0
    assert not Candle.objects.exists()


def test_only_a_worker_of_the_analytics_queue_queues_the_reconcile() -> None:
    ml_only = SimpleNamespace(task_consumer=SimpleNamespace(queues=[SimpleNamespace(name="ml")]))
    assert reconcile_on_worker_start(ml_only) is False
    assert reconcile_on_worker_start(SimpleNamespace()) is False


@pytest.fixture
def trades_without_candles(transactional_db: None) -> tuple[RawTrade, ...]:
    """Trades stored before the worker starts, their candle updates never run (the worker that took them died)."""
    trades = read_trades()[:2000]
    insert(trades)
    return trades


def test_a_starting_worker_makes_candles_a_lost_task_left_wrong_right(
    trades_without_candles: tuple[RawTrade, ...], celery_worker_process: ChildProcess
) -> None:
    """The next worker to start on the analytics queue writes the candles the lost task would have."""
    want = expected_candles(_last_minutes(trades_without_candles, 15), "1m")
    wait_for(lambda: stored_candles("1m") == want, timeout=60, what="the reconcile at worker start")
    assert "recent candles reconcile queued at worker start" in celery_worker_process.output()
