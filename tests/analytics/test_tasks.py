"""The Celery tasks on the real stack: in-process and in a real worker, idempotent, crash-safe, pushing to Channels.

Every test here uses real PostgreSQL, the Redis broker and the Redis channel layer; the worker tests start real
``celery worker`` processes and kill them with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.conf import settings as django_settings
from django.db import OperationalError, connection, transaction

from analytics import tasks
from analytics.candles import ALL_INTERVALS, recompute_candles
from analytics.dispatch import dispatch_batch
from analytics.groups import market_group
from analytics.models import Candle, IndicatorPoint, SymbolStats, Trade, WhaleAlert
from analytics.payloads import candle_item
from analytics.timeutil import ms_to_datetime
from analytics.windows import SymbolWindow
from tests.analytics.test_candles import (
    RawTrade,
    candle_snapshot,
    expected_candles,
    insert,
    read_trades,
    stored_candles,
)
from tests.analytics.test_dispatch import messages
from tests.analytics.test_stats import as_dict, reference
from tests.conftest import ChildProcess, subprocess_env, wait_for

SYMBOL_GROUP = "market.binance.btcusdt"


def qualifying(trades: tuple[RawTrade, ...], threshold: Decimal = Decimal("100000")) -> set[int]:
    return {t.trade_id for t in trades if Decimal(t.price) * Decimal(t.quantity) >= threshold}


def windows_for(trades: tuple[RawTrade, ...], size: int) -> list[SymbolWindow]:
    """The windows the consumer would report for batches of ``size`` trades."""
    out = []
    for i in range(0, len(trades), size):
        chunk = trades[i : i + size]
        out.append(
            SymbolWindow("binance", "BTCUSDT", min(t.time_ms for t in chunk), max(t.time_ms for t in chunk), len(chunk))
        )
    return out


class Listener:
    """A channel in the Redis channel layer subscribed to some groups, as a dashboard consumer would be.

    It has its own layer instance and event loop: channels_redis binds a channel's receive buffer to the loop of
    the first receive.
    """

    def __init__(self, *groups: str) -> None:
        self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        assert type(self.layer).__module__.startswith("channels_redis"), "the Redis channel layer is required"
        self.loop = asyncio.new_event_loop()
        self.channel = self.loop.run_until_complete(self.layer.new_channel())
        for group in groups:
            self.loop.run_until_complete(self.layer.group_add(group, self.channel))

    def close(self) -> None:
        self.loop.run_until_complete(self.layer.close_pools())
        self.loop.close()

    def receive(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """The next push's payload, or ``None`` when nothing arrives within ``timeout``."""
        try:
            message = self.loop.run_until_complete(asyncio.wait_for(self.layer.receive(self.channel), timeout))
        except TimeoutError:
            return None
        assert message["type"] == "push"
        payload: dict[str, Any] = message["payload"]
        return payload

    def receive_until(
        self, enough: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Collect pushes until ``enough(pushes)`` holds (fails when ``timeout`` passes without a push)."""
        got: list[dict[str, Any]] = []
        while not enough(got):
            payload = self.receive(timeout)
            assert payload is not None, f"timed out; received {kinds(got)}"
            got.append(payload)
        return got


def kinds(pushes: list[dict[str, Any]]) -> Counter[str]:
    return Counter(p["kind"] for p in pushes)


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    """``listen(*groups)`` subscribes a fresh channel; every one is closed at teardown."""
    made: list[Listener] = []

    def _listen(*groups: str) -> Listener:
        made.append(Listener(*groups))
        return made[-1]

    yield _listen
    for listener in made:
        listener.close()


def alert_rows() -> list[tuple[Any, ...]]:
    return list(WhaleAlert.objects.order_by("trade_id").values_list("exchange", "symbol", "trade_id", "notional"))


# ----------------------------------------------------------------------------------------------- in process


@pytest.mark.django_db
def test_tasks_in_process_compute_push_and_are_idempotent(settings, listen):
    settings.WHALE_THRESHOLD_USD = Decimal("100000")
    settings.CANDLES_PUSH_INTERVAL = 0  # every run pushes (the throttle has its own test)
    trades = read_trades()
    insert(trades)
    start, end = trades[0].time_ms, trades[-1].time_ms
    listener = listen(SYMBOL_GROUP, "whales", "overview")

    count = tasks.update_candles("binance", "BTCUSDT", start, end)
    push = listener.receive()
    assert push is not None
    assert push["kind"] == "candles"
    assert (push["exchange"], push["symbol"]) == ("binance", "BTCUSDT")
    expected_1m = expected_candles(trades, "1m")
    assert count == len(push["candles"]) == sum(len(expected_candles(trades, i)) for i in ALL_INTERVALS)
    first = push["candles"][0]
    # The push carries the API's candle item, built by the same function.
    assert first == candle_item(
        Candle.objects.get(exchange="binance", symbol="BTCUSDT", interval="1m", open_time=ms_to_datetime(first["t"]))
    )
    assert first["interval"] == "1m"
    assert first["t"] == min(expected_1m)
    assert Decimal(first["open"]) == expected_1m[first["t"]]["open"]
    assert first["trade_count"] == expected_1m[first["t"]]["trade_count"]
    assert {(i["interval"], i["t"]) for i in push["indicators"]} == {(c["interval"], c["t"]) for c in push["candles"]}
    assert set(push["indicators"][0]) == {
        "interval", "t", "open_time", "sma", "ema", "rsi", "macd", "macd_signal", "macd_hist",
        "bb_upper", "bb_middle", "bb_lower",
    }  # fmt: skip
    assert listener.receive(timeout=0.5) is None  # one push per run, not one per candle
    assert IndicatorPoint.objects.filter(interval="1m").count() == len(expected_1m)

    before = candle_snapshot()
    tasks.update_candles("binance", "BTCUSDT", start, end)
    assert candle_snapshot() == before
    again = listener.receive()  # a replayed window pushes the (unchanged) candles again: harmless, bounded
    assert again is not None
    assert again["candles"] == push["candles"]

    assert tasks.detect_whales("binance", "BTCUSDT", start, end) == len(qualifying(trades))
    whales = [listener.receive(), listener.receive()]  # to `whales` and to the symbol's group
    assert [w["kind"] for w in whales if w] == ["whales", "whales"]
    assert whales[0] is not None
    assert {a["trade_id"] for a in whales[0]["alerts"]} == qualifying(trades)
    assert tasks.detect_whales("binance", "BTCUSDT", start, end) == 0  # nothing new: no push either

    assert tasks.refresh_stats("binance", "BTCUSDT") is True
    stats_pushes = [listener.receive(), listener.receive()]  # the symbol's group and overview
    assert [s["kind"] for s in stats_pushes if s] == ["stats", "stats"]
    assert as_dict(SymbolStats.objects.get()) == reference(list(trades))
    assert tasks.refresh_stats("binance", "NOPE") is False
    assert tasks.refresh_all_stats() == 1
    assert [s["kind"] for s in (listener.receive(), listener.receive()) if s] == ["stats", "stats"]
    assert listener.receive(timeout=0.5) is None

    # Retention: the recording is from 2024, far older than 30 days; candles and alerts stay.
    dropped = tasks.apply_retention()
    assert dropped["default_rows"] + len(dropped["partitions"]) > 0
    assert not Trade.objects.exists()
    assert candle_snapshot() == before
    assert len(alert_rows()) == len(qualifying(trades))
    assert tasks.update_candles("binance", "BTCUSDT", start, end) == 0  # no trades left: nothing rewritten
    assert candle_snapshot() == before
    assert tasks.refresh_all_stats() == 0  # the symbol is known (candles) but has no trade: its last row stays
    assert as_dict(SymbolStats.objects.get()) == reference(list(trades))


@pytest.mark.django_db
def test_candle_pushes_are_throttled_per_symbol_with_one_trailing_push(settings, listen):
    from cryptoproject.celery import app

    settings.CANDLES_PUSH_INTERVAL = 30
    app.control.purge()
    symbol = f"THR{uuid.uuid4().hex[:8].upper()}"  # the throttle keys live in Redis: a fresh symbol per run
    trades = read_trades()[:3000]
    insert(trades, symbol=symbol)
    listener = listen(market_group("binance", symbol))
    windows = [trades[:1000], trades[1000:2000], trades[2000:]]
    results = [tasks.update_candles("binance", symbol, w[0].time_ms, w[-1].time_ms) for w in windows]
    assert all(results)
    first = listener.receive()
    assert first is not None
    assert first["kind"] == "candles"
    assert listener.receive(timeout=0.5) is None  # the other two runs did not push
    # One trailing push was scheduled on the broker (after the period), covering both.
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    queued = [m for m in messages(client, "analytics") if m["task"] == "analytics.tasks.push_latest_candles"]
    assert [m["args"] for m in queued] == [["binance", symbol]]
    assert queued[0]["eta"] is not None
    app.control.purge()
    # What it pushes: the newest candle of every interval, with its indicators, as stored now.
    assert tasks.push_latest_candles("binance", symbol) is True
    trailing = listener.receive()
    assert trailing is not None
    newest = {i: max(expected_candles(trades, i)) for i in ALL_INTERVALS}
    assert [(c["interval"], c["t"]) for c in trailing["candles"]] == list(newest.items())
    assert [(c["interval"], c["t"]) for c in trailing["indicators"]] == list(newest.items())
    last_1m = expected_candles(trades, "1m")[newest["1m"]]
    assert Decimal(trailing["candles"][0]["close"]) == last_1m["close"]
    assert trailing["candles"][0]["trade_count"] == last_1m["trade_count"]
    assert tasks.push_latest_candles("binance", "NOTHING") is False


@pytest.mark.django_db
def test_detect_whales_is_idempotent_and_queues_no_delivery(settings):
    from cryptoproject.celery import app

    settings.WHALE_THRESHOLD_USD = Decimal("100000")
    app.control.purge()
    trades = read_trades()
    insert(trades)
    start, end = trades[0].time_ms, trades[-1].time_ms
    assert tasks.detect_whales("binance", "BTCUSDT", start, end) == 1
    # A retry or replay creates nothing.
    assert tasks.detect_whales("binance", "BTCUSDT", start, end) == 0
    assert tasks.detect_whales("binance", "BTCUSDT", 0, 1000) == 0
    assert WhaleAlert.objects.count() == 1
    # The old per-subscription hand-off is gone: users' whale rules are evaluated with the other alert kinds.
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    assert [m["task"] for m in messages(client, "alerts")] == []
    app.control.purge()


def test_retry_policy_is_transient_errors_only():
    from django.db import InterfaceError, OperationalError
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    for task in (
        tasks.update_candles,
        tasks.detect_whales,
        tasks.refresh_stats,
        tasks.refresh_all_stats,
        tasks.apply_retention,
    ):
        assert set(task.autoretry_for) == {
            OperationalError,
            InterfaceError,
            RedisConnectionError,
            KombuOperationalError,
        }
        assert task.retry_backoff
        assert task.retry_jitter is True
        assert task.max_retries == 8
        assert task.ignore_result is True
        assert task.acks_late is True
        assert task.reject_on_worker_lost is True


def test_beat_schedule_and_routes():
    from cryptoproject.celery import app

    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert schedule["analytics.tasks.refresh_all_stats"]["schedule"] == 30.0
    hourly = schedule["analytics.tasks.apply_retention"]["schedule"]
    assert hourly.minute == {7}
    assert len(hourly.hour) == 24
    router = app.amqp.router
    assert router.route({}, "analytics.tasks.detect_whales")["queue"].name == "alerts"
    for name in ("update_candles", "refresh_stats", "refresh_all_stats", "apply_retention"):
        assert router.route({}, f"analytics.tasks.{name}")["queue"].name == "analytics"


# ----------------------------------------------------------------------------------------------- real workers


def start_worker(spawn: Callable[..., ChildProcess], **env: str) -> ChildProcess:
    """A real worker on all project queues, like the ``celery_worker_process`` fixture, with extra environment."""
    from cryptoproject.celery import app

    node = f"test-{uuid.uuid4().hex[:8]}@%h"
    child = spawn(
        [sys.executable, "-m", "celery", "-A", "cryptoproject", "worker", "-Q", "analytics,alerts,default", "-c", "2",
         "-n", node, "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        env=subprocess_env(**env),
        name="celery",
    )  # fmt: skip
    wait_for(
        lambda: child.proc.poll() is not None or app.control.ping(timeout=0.5),
        timeout=90,
        what="the Celery worker to answer a ping",
    )
    assert child.proc.poll() is None, child.output()
    return child


def children_of(pid: int) -> list[int]:
    """The worker's pool processes (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the closing parenthesis.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def blocked_candle_writers() -> set[int]:
    """Backends of this database waiting on a lock to write candles: on the table the test holds, or on the
    per-symbol advisory lock that a killed worker's backend still holds while it waits for the table."""
    with connection.cursor() as cur:
        # pg_stat_activity is snapshotted per transaction: the caller may be inside one (holding the lock).
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND wait_event_type = 'Lock' AND (query ILIKE %s OR query ILIKE %s)",
            ["%INSERT INTO analytics_candle%", "%pg_advisory_xact_lock%"],
        )
        return {row[0] for row in cur.fetchall()}


def active_candle_writers() -> set[int]:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND state <> 'idle' AND query ILIKE %s",
            ["%INSERT INTO analytics_candle%"],
        )
        return {row[0] for row in cur.fetchall()}


def assert_final_state(trades: tuple[RawTrade, ...]) -> None:
    for interval in ("1m", "5m", "1h", "1d"):
        assert stored_candles(interval) == expected_candles(trades, interval), interval
    assert {row[2] for row in alert_rows()} == qualifying(trades)
    assert WhaleAlert.objects.count() == len(qualifying(trades))  # exactly one per qualifying trade


def final_minute_pushed(trades: tuple[RawTrade, ...]) -> Callable[[dict[str, Any]], bool]:
    """A predicate: this push carries the newest 1m candle with its final values."""
    expected = expected_candles(trades, "1m")
    last = max(expected)

    def check(push: dict[str, Any]) -> bool:
        return push["kind"] == "candles" and any(
            c["interval"] == "1m" and c["t"] == last and Decimal(c["close"]) == expected[last]["close"]
            and c["trade_count"] == expected[last]["trade_count"]
            for c in push["candles"]
        )  # fmt: skip

    return check


@pytest.mark.django_db(transaction=True)
def test_real_worker_runs_a_dispatched_batch_pushes_throttled_and_replays_change_nothing(celery_worker_process, listen):
    trades = read_trades()
    insert(trades)
    windows = windows_for(trades, 2500)
    listener = listen(SYMBOL_GROUP, "whales")
    dispatch_batch(windows)
    done = final_minute_pushed(trades)
    pushes = listener.receive_until(lambda got: any(done(p) for p in got) and kinds(got)["whales"] == 2)
    assert_final_state(trades)
    # Throttled per symbol: never more candle pushes than windows (at most one per run, coalesced when fast).
    assert 1 <= kinds(pushes)["candles"] <= len(windows)
    whale_push = next(p for p in pushes if p["kind"] == "whales")
    assert {a["trade_id"] for a in whale_push["alerts"]} == qualifying(trades)
    wait_for(lambda: SymbolStats.objects.exists(), what="the stats row")
    wait_for(lambda: as_dict(SymbolStats.objects.get()) == reference(list(trades)), what="the final stats")
    snapshot, alerts = candle_snapshot(), alert_rows()

    # The same batch delivered again (a consumer restart re-reads it): candles, alerts and stats stay the same.
    with connection.cursor() as cur:
        cur.execute("SELECT now()")
        mark = cur.fetchone()[0]
    dispatch_batch(windows)
    wait_for(
        lambda: not Candle.objects.filter(updated_at__lt=mark).exists(),
        timeout=60,
        what="every candle to be recomputed by the replay",
    )
    assert candle_snapshot() == snapshot
    assert alert_rows() == alerts
    assert_final_state(trades)
    assert as_dict(SymbolStats.objects.get()) == reference(list(trades))


@pytest.mark.django_db(transaction=True)
def test_sigkill_of_pool_processes_mid_task_redelivers_and_ends_the_same(celery_worker_process):
    trades = read_trades()
    insert(trades)
    window = windows_for(trades, len(trades))
    with transaction.atomic():
        # Hold the candle table so update_candles is caught mid-task: its trades are read, its write waits.
        with connection.cursor() as cur:
            cur.execute("LOCK TABLE analytics_candle IN SHARE MODE")
        dispatch_batch(window)
        first = wait_for(blocked_candle_writers, timeout=60, what="update_candles to block on the candle table")
        pool = children_of(celery_worker_process.proc.pid)
        assert pool, "the prefork pool has processes"
        for pid in pool:
            os.kill(pid, signal.SIGKILL)
        # acks_late + reject_on_worker_lost: the worker requeues the task and a fresh pool process runs it again.
        wait_for(lambda: blocked_candle_writers() - first, timeout=90, what="the redelivered update_candles")
    wait_for(lambda: stored_candles("1m") == expected_candles(trades, "1m"), timeout=60, what="final candles")
    wait_for(lambda: len(alert_rows()) == len(qualifying(trades)), timeout=60, what="alerts")
    assert_final_state(trades)
    assert celery_worker_process.proc.poll() is None


@pytest.mark.django_db(transaction=True)
def test_sigkill_of_the_whole_worker_mid_task_then_restart_ends_the_same(spawn):
    from cryptoproject.celery import app

    app.control.purge()
    # purge() empties the queues, not the broker's record of unacknowledged messages: those a worker killed by an
    # earlier (failed) run had reserved would come back into this test's workers after the visibility timeout.
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).delete("unacked", "unacked_index")
    trades = read_trades()
    insert(trades)
    # A short visibility timeout lets the restarted worker take back what the killed one had reserved. No
    # reconcile at start (test_reconcile.py): the candles here come from the redelivered task alone.
    worker = start_worker(spawn, CELERY_VISIBILITY_TIMEOUT="5", CANDLE_RECONCILE_MINUTES="0")
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("LOCK TABLE analytics_candle IN SHARE MODE")
        dispatch_batch(windows_for(trades, len(trades)))
        wait_for(blocked_candle_writers, timeout=60, what="update_candles to block on the candle table")
        pids = [worker.proc.pid, *children_of(worker.proc.pid)]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        worker.proc.wait(30)
    # The killed worker's transaction never commits: its backend rolls back once it finds the client gone.
    wait_for(lambda: not active_candle_writers(), timeout=60, what="the dead worker's statement to end")
    assert not Candle.objects.exists()
    restarted = start_worker(spawn, CELERY_VISIBILITY_TIMEOUT="5", CANDLE_RECONCILE_MINUTES="0")
    wait_for(lambda: stored_candles("1m") == expected_candles(trades, "1m"), timeout=120, what="redelivered candles")
    wait_for(lambda: len(alert_rows()) == len(qualifying(trades)), timeout=60, what="alerts")
    assert_final_state(trades)
    assert restarted.proc.poll() is None


@pytest.fixture
def long_retention(monkeypatch):
    """Children started after this keep the 2024 recording (the beat may also fire the hourly retention)."""
    monkeypatch.setenv("TRADE_RETENTION_DAYS", "100000")


@pytest.mark.django_db(transaction=True)
def test_real_beat_schedules_the_stats_refresh(long_retention, celery_worker_process, spawn, tmp_path):
    trades = read_trades()[:300]
    insert(trades)
    # The periodic refresh walks the symbols known from their 1m candles.
    recompute_candles("binance", "BTCUSDT", trades[0].time_ms, trades[-1].time_ms, intervals=["1m"])
    beat = spawn(
        [sys.executable, "-m", "celery", "-A", "cryptoproject", "beat", "--loglevel", "INFO",
         "--schedule", str(tmp_path / "celerybeat-schedule")],
        env=subprocess_env(),
        name="beat",
    )  # fmt: skip
    wait_for(lambda: SymbolStats.objects.exists(), timeout=120, what="refresh_all_stats sent by the beat")
    assert as_dict(SymbolStats.objects.get()) == reference(list(trades))
    assert beat.proc.poll() is None, beat.output()
    assert "analytics.tasks.refresh_all_stats" in beat.output()


@pytest.mark.django_db(transaction=True)
def test_a_transient_database_error_is_retried_then_gives_up(settings, caplog):
    import psycopg
    from django.db import OperationalError

    settings.CANDLES_PUSH_INTERVAL = 0
    trades = read_trades()[:500]
    insert(trades)
    db = settings.DATABASES["default"]
    holder = psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"], dbname=db["NAME"]
    )
    try:
        # Another session holds the candle table: every attempt fails fast with a real lock timeout.
        holder.execute("LOCK TABLE analytics_candle IN SHARE MODE")
        with connection.cursor() as cur:
            cur.execute("SET lock_timeout = '50ms'")
        caplog.set_level("INFO", logger="celery.app.trace")
        result = tasks.update_candles.apply(("binance", "BTCUSDT", trades[0].time_ms, trades[-1].time_ms))
        assert result.failed()
        assert isinstance(result.result, OperationalError)
        retries = [r for r in caplog.records if "Retry in" in r.getMessage()]
        assert len(retries) == tasks.update_candles.max_retries
    finally:
        holder.rollback()
        holder.close()
        with connection.cursor() as cur:
            cur.execute("RESET lock_timeout")
    # Once the lock is gone the same task succeeds: nothing half-written was left behind.
    assert not Candle.objects.exists()
    result = tasks.update_candles.apply(("binance", "BTCUSDT", trades[0].time_ms, trades[-1].time_ms))
    assert result.successful()
    assert stored_candles("1m") == expected_candles(trades, "1m")


@pytest.mark.django_db
@pytest.mark.parametrize("error", [ValueError("a bug for one symbol"), OperationalError("connection lost")])
def test_one_symbols_failure_never_aborts_the_others(monkeypatch, caplog, error):
    trades = list(read_trades()[:50])
    insert(trades, symbol="AAAUSDT")
    insert(trades, symbol="BBBUSDT")
    real_refresh = tasks.stats_logic.refresh_stats

    def refresh(exchange: str, symbol: str) -> Any:
        if symbol == "AAAUSDT":
            raise error
        return real_refresh(exchange, symbol)

    monkeypatch.setattr(tasks.stats_logic, "refresh_stats", refresh)
    monkeypatch.setattr(tasks.queries, "known_pairs", lambda: [("binance", "AAAUSDT"), ("binance", "BBBUSDT")])
    expected = tasks.SymbolsFailedError if isinstance(error, ValueError) else OperationalError
    with pytest.raises(expected):
        tasks.refresh_all_stats.run()
    assert list(SymbolStats.objects.values_list("symbol", flat=True)) == ["BBBUSDT"]  # the symbol after it: done
    assert "stats refresh failed for a symbol" in caplog.text
    assert any(getattr(r, "symbol", None) == "AAAUSDT" for r in caplog.records)


def test_the_task_time_limit_is_not_swallowed_per_symbol(monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    calls: list[str] = []

    def refresh(exchange: str, symbol: str) -> Any:
        calls.append(symbol)
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(tasks.stats_logic, "refresh_stats", refresh)
    with pytest.raises(SoftTimeLimitExceeded):
        tasks.refresh_symbols_stats([("binance", "AAAUSDT"), ("binance", "BBBUSDT")])
    assert calls == ["AAAUSDT"]
