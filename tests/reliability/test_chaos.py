"""The ``make chaos`` scenarios, small, in ``make test``: every fault on the real stack, every trade checked.

Each scenario runs the whole pipeline (simulator, ingest, consume_trades, a Celery worker, beat) as real processes on a
stack of its own (``scripts/stack_env.sh 11``; the broker loss on stack 12 with three brokers), injects its fault and
compares the database with the ground truth computed from the recordings by :mod:`chaos.truth`. The full-size run
(200,000 trades, a 120 s Kafka outage, ...) is ``make chaos``; its table is in docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from chaos import truth
from chaos.harness import (
    RECORDINGS,
    Options,
    Row,
    Scenario,
    Stack,
    accounted_trades,
    by_name,
    reported_loss_windows,
    run_scenario,
    setup_database,
    stack_environment,
)
from chaos.hostile import SEEN, hostile_records

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRADES = 6000


@pytest.fixture(scope="module")
def expected() -> list[truth.Trade]:
    return truth.workload(RECORDINGS, TRADES)


@pytest.fixture(scope="module")
def stacks() -> Iterator[dict[int, Stack]]:
    started: dict[int, Stack] = {}
    yield started
    for stack in started.values():
        stack.run("down")


def _stack(stacks: dict[int, Stack], brokers: int) -> Stack:
    stack = stacks.get(brokers)
    if stack is None:
        # Stacks 11 and 12: not the suite's own (whose servers these tests stop), nor make chaos's (7 and 8).
        number = int(os.environ.get("CHAOS_TEST_STACK", "11"))
        stack = Stack(stack_environment(number if brokers == 1 else number + 1, brokers))
        try:
            stack.run("up")
            setup_database(stack)
        except BaseException:
            stack.run("down")  # nothing half-started stays behind
            raise
        # Kept only once set up: after a failed first `up` (a port briefly held by another process, say), the next
        # scenario sets the stack up again instead of running on one without its database.
        stacks[brokers] = stack
    stack.run("up")  # a server a previous scenario stopped is back
    return stack


def small(tmp: Path) -> Options:
    return Options(
        trades=TRADES,
        rate=1500.0,
        kafka_outage_s=15.0,
        postgres_outage_s=8.0,
        redis_outage_s=5.0,
        rebalance_every_s=3.0,
        restart_pause_s=1.0,
        drop_every=1000,
        gap_every=300,
        malformed_rate=0.01,
        hostile=100,
        drain_timeout_s=120.0,
        logs=tmp,
        extra_env={"CELERY_VISIBILITY_TIMEOUT": "20"},
    )


def assert_scenario_ok(row: Row, trades: int, logs: Path) -> None:
    """Every check of a scenario's row (shared with tests/conformance/test_chaos.py): every trade stored once with
    its values, candles, whales, dead letters, alerts, suppressions and deliveries as the truth says; a failure
    shows the row and the tail of every process's log under ``logs``."""
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.rglob("*.log")))
    assert row.completed, f"{row}\n{tails}"
    assert (row.missing, row.duplicated, row.unexpected, row.wrong_values) == (0, 0, 0, 0), f"{row}\n{tails}"
    assert row.stored == trades
    assert row.candles_wrong == 0, row
    assert (row.whales, row.whales_wrong) == (row.whales_expected, 0), row
    assert row.dead_letters == row.dead_letters_expected, f"{row}\n{tails}"
    alerts = (row.alerts_missing, row.alerts_duplicated, row.alerts_unexpected, row.alerts_wrong)
    assert alerts == (0, 0, 0, 0), row
    assert (row.alerts, row.suppressed) == (row.alerts_expected, row.suppressed_expected), row
    assert row.alerts_expected > 0, row
    assert row.deliveries_wrong == 0, row
    # Every alert's in-app delivery sent by the worker's sender, and listed exactly once.
    assert (row.deliveries_unsent, row.notifications_wrong) == (0, 0), f"{row}\n{tails}"
    assert row.ok


# ws-drops runs per exchange in the conformance suite (tests/conformance/test_chaos.py), Binance among them;
# kafka-down-long is make chaos's only (its spill and replay are tests/ingest/test_kafka_outage.py's, in seconds).
@pytest.mark.parametrize(
    "scenario", [s for s in by_name(None) if s.name not in {"ws-drops", "kafka-down-long"}], ids=lambda s: s.name
)
def test_scenario(scenario: Scenario, stacks: dict[int, Stack], expected: list[truth.Trade], tmp_path: Path) -> None:
    row = run_scenario(scenario, small(tmp_path), _stack(stacks, scenario.brokers), expected)
    print(row)  # the figures, shown with -s or -rP
    assert_scenario_ok(row, TRADES, tmp_path)
    if scenario.hostile:
        assert row.dead_letters_expected >= 100  # the hostile records, plus the malformed frames sent


def test_truth_is_independent_of_the_project(expected: list[truth.Trade]) -> None:
    """The ground truth loops the files as the simulator documents it: ids consecutive, times increasing."""
    ids = [t.trade_id for t in expected]
    assert ids == list(range(ids[0], ids[0] + TRADES))
    assert len(expected) == TRADES
    bars = truth.minute_bars(expected)
    assert sum(b.trades for b in bars.values()) == TRADES
    # btcusdt_20240809.gz holds one trade of about $427k: the only whale of the first pass.
    assert len(truth.whale_ids(truth.workload(RECORDINGS, 19_904), Decimal("100000"))) == 1


def test_hostile_records_are_all_invalid_and_repeatable() -> None:
    """Every hostile record is refused by ``decode`` with a reason, but for a number too large for the column,
    which PostgreSQL refuses (the consumer isolates it and dead-letters it): none can be stored."""
    from ingest.records import InvalidRecordError, decode

    records = hostile_records(100, seed=3)
    assert records == hostile_records(100, seed=3)
    assert records[: len(SEEN)] == SEEN
    accepted, reasons = [], []
    for value in records:
        try:
            decode(value)
        except InvalidRecordError as exc:
            reasons.append(exc.reason)
        else:
            accepted.append(value)
    assert all(reasons)
    assert all(b"1e999999" in value for value in accepted), accepted


def _trades(*rows: tuple[int, str, int]) -> list[truth.Trade]:
    return [truth.Trade(i, Decimal(p), Decimal(1), False, s * 1000) for i, p, s in rows]


def test_alert_truth_follows_the_documented_semantics() -> None:
    """The chaos truth of each trade kind on hand-made sequences (docs/ALERTS.md): ties with the level, the first
    trade only setting the state, a pct_move window emptied by time, a late trade counted at the time before it,
    and the cooldown counted from the last kept firing."""
    assert truth.seen_order([[5, 3], [1, 2]]) == [3, 5, 1, 2]
    cross = _trades(
        (1, "101", 0), (2, "99", 1), (3, "100", 2), (4, "101", 3), (5, "100", 4), (6, "99", 5), (7, "100", 6)
    )
    level = Decimal(100)
    assert truth.price_cross_fires(cross, level, "both") == {2: "down", 3: "up", 5: "down", 7: "up"}
    assert truth.price_cross_fires(cross, level, "up") == {3: "up", 7: "up"}
    assert truth.price_cross_fires(cross, level, "down") == {2: "down", 5: "down"}
    move = _trades((10, "100", 0), (11, "101", 5), (12, "102", 6), (13, "102", 20), (14, "100.9", 21), (9, "104", 1))
    assert truth.pct_move_fires(move, Decimal(1), 10, "both") == {
        11: ("up", Decimal(100)),
        14: ("down", Decimal(102)),
        9: ("up", Decimal("100.9")),  # stamped 1 s, counted at 21 s: its window is trades 13 and 14
    }
    assert truth.pct_move_fires(move, Decimal(1), 10, "down") == {14: ("down", Decimal(102))}
    # A down move, then an up move measured from the new low.
    both = _trades((1, "100", 0), (2, "90", 1), (3, "110", 2))
    assert truth.pct_move_fires(both, Decimal(5), 60, "both") == {2: ("down", Decimal(100)), 3: ("up", Decimal(90))}
    # volume_spike: after the start, the newest candle still open, a missing bar breaks the window.
    m = 60_000
    bars = {
        k * m: truth.Bar(Decimal(1), Decimal(1), Decimal(1), Decimal(1), Decimal(v), 1)
        for k, v in enumerate(["2", "1", "3", "1.5", "9"])
    } | {6 * m: truth.Bar(Decimal(1), Decimal(1), Decimal(1), Decimal(1), Decimal(5), 1)}  # minute 5 missing
    assert truth.volume_spike_fires(bars, m, Decimal("1.5"), 1, since_ms=0) == {2 * m, 4 * m}
    assert truth.volume_spike_fires(bars, m, Decimal("1.5"), 1, since_ms=2 * m) == {4 * m}
    assert truth.volume_spike_fires(bars, m, Decimal(1), 2, since_ms=0) == {2 * m, 4 * m}  # 3 x 2 >= 3; 9 x 2 >= 4.5
    assert truth.volume_spike_fires(bars, m, Decimal(1), 1, since_ms=None) == set()
    fires = {1: "a", 3: "b", 5: "c"}
    times = {1: 0, 3: 10_000, 5: 20_000}
    assert truth.cooldown(fires, times, [1, 3, 5], 15) == ({1: "a", 5: "c"}, 1)
    assert truth.cooldown(fires, times, [1, 3, 5], 0) == (fires, 0)


def test_reported_loss_windows_account_only_the_missing_trades_inside_them(tmp_path: Path) -> None:
    """A window is read from ingest's JSON log (its symbol's only, every life of the process); an expected trade is
    left out only when it is missing from the database and lies in a window, bounds included."""
    log = tmp_path / "ingest.log"
    message = "trades between these times may be lost: older than the newest trades the exchange's REST serves"
    log.write_text(
        "\n".join(
            [
                '{"message": "ingest started"}',
                f'{{"message": "{message}", "symbol": "BTCUSDT", "after_time": 1000000, "before_time": 2000000}}',
                f'{{"message": "{message}", "symbol": "ETHUSDT", "after_time": 5000000, "before_time": 6000000}}',
                "not json, a traceback line mentioning trades between these times may be lost",
                f'{{"message": "{message}", "symbol": "BTCUSDT", "after_time": null, "before_time": 300000}}',
            ]
        )
    )
    windows = reported_loss_windows(log, "BTCUSDT")
    assert windows == [(1_000_000, 2_000_000), (None, 300_000)]
    assert reported_loss_windows(tmp_path / "absent.log", "BTCUSDT") == []
    expected = _trades((1, "1", 100), (2, "1", 999), (3, "1", 1000), (4, "1", 2000), (5, "1", 2001), (6, "1", 5500))
    # (times in s) 1 (before 300) and 3, 4 (the bounds) are missing inside a window: accounted; 2, 5 and 6 are
    # missing outside every BTCUSDT window: they stay expected (and so count as missing)
    kept = accounted_trades(expected, stored_ids=set(), windows=windows)
    assert [t.trade_id for t in kept] == [2, 5, 6]
    # a stored trade is always expected, window or not
    assert [t.trade_id for t in accounted_trades(expected, {3}, windows)] == [2, 3, 5, 6]
    assert accounted_trades(expected, set(), []) == expected
