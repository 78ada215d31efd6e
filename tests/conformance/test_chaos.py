"""Conformance, chaos: the ``ws-drops`` scenario of ``make chaos`` for every registered exchange, small.

The whole pipeline (simulator serving the bundled recordings as the exchange's, ``ingest``, ``consume_trades``, a
Celery worker) runs as real processes on a stack of its own (``scripts/stack_env.sh 13``; ``CONFORMANCE_CHAOS_STACK``
moves it: not the suite's, nor tests/reliability's 11 and 12, which may run beside it on another worker), with the
connection dropped and trade ids skipped; the database must end equal to the ground truth of :mod:`chaos.truth`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chaos import truth
from chaos.harness import (
    RECORDINGS,
    Options,
    Stack,
    by_name,
    reported_loss_windows,
    run_scenario,
    setup_database,
    stack_environment,
)
from tests.conformance import hooks
from tests.reliability.test_chaos import assert_scenario_ok

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRADES = 3000
(WS_DROPS,) = by_name(["ws-drops"])


@pytest.fixture(scope="module")
def expected() -> list[truth.Trade]:
    return truth.workload(RECORDINGS, TRADES)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    stack = Stack(stack_environment(int(os.environ.get("CONFORMANCE_CHAOS_STACK", "13"))))
    try:
        stack.run("up")
        setup_database(stack)
        yield stack
    finally:
        stack.run("down")


def last_metrics(log: Path) -> dict[str, Any]:
    """The counters of ingest's last metrics line in its log (every life of the process appends to it)."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{") and '"metrics"' in line:
            metrics: dict[str, Any] = json.loads(line)["metrics"]
            return metrics
    raise AssertionError(f"no metrics line in {log}")


@pytest.mark.parametrize("exchange", hooks.names())
def test_ws_drops(exchange: str, stack: Stack, expected: list[truth.Trade], tmp_path: Path) -> None:
    if not hooks.supports_backfill(exchange):
        pytest.skip(f"{exchange} cannot fetch missing trades back over REST: ws-drops would lose them by design")
    # An exchange whose REST serves only its newest trades (Bybit) cannot get back what a reconnect missed beyond
    # them: the trades lost that way must each lie in a window ingest reported (and counted), and the checks run
    # over the rest. Its ids are not consecutive, so a trade skipped within a connection could not be seen at all:
    # no id gap is injected for it.
    catches_up = hooks.catches_up(exchange)
    options = Options(
        trades=TRADES,
        rate=1500.0,
        # At most 3 trades a frame (--batch-size below; Binance sends one): 4 to 12 drops, however much a busy machine
        # makes the simulator batch (unbounded, a loaded run once sent 35 trades a frame and never reached a drop).
        drop_every=250,
        gap_every=0 if catches_up else 300,
        drain_timeout_s=120.0,
        logs=tmp_path,
        extra_env={"CELERY_VISIBILITY_TIMEOUT": "20"},
        exchange=exchange,
        symbol=hooks.symbol(exchange),
        latest_trade=hooks.latest_trade(exchange),
        # The harness follows the market on the simulator's REST twice a second: with the exchange's public REST
        # limit (Kraken: one call a second) those calls would starve the backfill this scenario is about.
        extra_simulator_args=["--rest-rate", "0", "--batch-size", "3", *hooks.simulator_args(exchange)],
        account_reported_losses=catches_up,
    )
    row = run_scenario(WS_DROPS, options, stack, expected)
    print(row)  # the figures, shown with -s or -rP
    assert_scenario_ok(row, TRADES - row.lost_reported, tmp_path)
    assert row.dead_letters_expected == 0  # nothing malformed was sent
    metrics = last_metrics(tmp_path / WS_DROPS.name / "ingest.log")
    assert metrics["reconnects"] >= 1, metrics
    if catches_up:
        # Every reported window counted once; what was lost lies in them (else row.missing above); and the
        # reconnects' catch-up brought trades back over REST.
        assert row.lost_windows == metrics["backfill_unrecoverable"], (row, metrics)
        # Each window is a hole between trades ingest received: it runs from the last trade seen before a drop to
        # the first one received after it (live, or the oldest REST row), both stored. A window anchored anywhere
        # else would account for trades it has no right to (how many a window holds depends on how long the
        # reconnect took, which a loaded machine stretches).
        with psycopg.connect(stack.database_url) as conn:
            stored = {
                r[0] for r in conn.execute("SELECT trade_id FROM analytics_trade WHERE exchange = %s", [exchange])
            }
        stored_times = {t.time_ms for t in expected if t.trade_id in stored}
        windows = reported_loss_windows(tmp_path / WS_DROPS.name / "ingest.log", options.symbol)
        assert all(lo in stored_times for lo, _hi in windows), windows
        assert all(hi in stored_times for _lo, hi in windows), windows
        assert metrics["tail_probes"] >= metrics["reconnects"], metrics
        # Each reconnect's catch-up brought trades back, or reported what it could not reach: on a loaded machine a
        # reconnect may take longer than REST's newest 60 trades last (a loaded run reported 2 windows, 0 back).
        assert metrics["backfilled"] > 0 or row.lost_windows >= metrics["reconnects"], (row, metrics)
    else:
        # The faults happened: ids missed, and the missed ones came back over REST.
        assert (row.lost_windows, row.lost_reported) == (0, 0), row
        assert metrics["gaps"] >= 1, metrics
        assert metrics["backfilled"] > 0, metrics
