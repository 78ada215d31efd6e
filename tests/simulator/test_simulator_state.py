"""``simulate_exchange --state FILE``: a restarted simulator never issues a trade id twice."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ingest.records import TradeRecord
from simulator.ids import StateError, continue_ids, load_last_ids, save_last_ids
from simulator.replay import read_trades
from tests.conftest import ChildProcess, manage, wait_for
from tests.simulator.test_simulator import _port_of
from tests.simulator.test_simulator_support import BTC_0808, connect, recv_json

pytestmark = pytest.mark.unit

RECORDS_0808 = list(read_trades(BTC_0808))


def trade(symbol: str, trade_id: int) -> TradeRecord:
    return TradeRecord("binance", symbol, trade_id, "1.0", "1.0", False, 1_700_000_000_000, 1_700_000_000_000, 0)


def test_ids_continue_after_the_last_run_per_symbol() -> None:
    records = [trade("BTCUSDT", 10), trade("ETHUSDT", 500), trade("BTCUSDT", 11), trade("SOLUSDT", 7)]
    shifted = list(continue_ids(records, {"BTCUSDT": 41, "ETHUSDT": 100}))
    # BTCUSDT restarts after 41 and stays consecutive; ETHUSDT is already past its last id; SOLUSDT is new.
    assert [(t.symbol, t.trade_id) for t in shifted] == [
        ("BTCUSDT", 42),
        ("ETHUSDT", 500),
        ("BTCUSDT", 43),
        ("SOLUSDT", 7),
    ]
    assert [t._replace(trade_id=0) for t in shifted] == [t._replace(trade_id=0) for t in records]


def test_state_file_round_trip_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "binance.json"
    assert load_last_ids(path, "binance") == {}
    save_last_ids(path, "binance", {"BTCUSDT": 3_735_693_015})
    assert load_last_ids(path, "binance") == {"BTCUSDT": 3_735_693_015}
    assert [p.name for p in path.parent.iterdir()] == ["binance.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read it"),
        ('{"format": 1, "exchange": "binance"}', "not a simulator state file"),
        ('{"format": 1, "exchange": "kraken", "last_ids": {}}', "belongs to the 'kraken' simulator"),
        ('{"format": 1, "exchange": "binance", "last_ids": {"BTCUSDT": "12"}}', "integer ids"),
    ],
)
def test_a_bad_state_file_is_refused_naming_it(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateError, match=message) as raised:
        load_last_ids(path, "binance")
    assert str(path) in str(raised.value)
    with pytest.raises(CommandError, match=message):
        call_command("simulate_exchange", "--port", "0", "--replay", str(BTC_0808), "--state", str(path))


def _read_ids(port: int, count: int) -> list[int]:
    ws = connect(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade")
    try:
        return [recv_json(ws)["data"]["t"] for _ in range(count)]
    finally:
        ws.close()


def test_a_restarted_simulator_continues_after_the_ids_it_sent(
    spawn: Callable[..., ChildProcess], tmp_path: Path
) -> None:
    state = tmp_path / "binance.json"
    save_last_ids(state, "binance", {"ETHUSDT": 5})  # a symbol this run does not trade keeps its last id
    recorded = [r.trade_id for r in RECORDS_0808]
    args = ["simulate_exchange", "--port", "0", "--replay", str(BTC_0808), "--speed", "0", "--state", str(state)]

    first = spawn(manage(*args), name="sim-1")
    port = wait_for(_port_of(first), timeout=60, what="the simulator to listen")
    assert _read_ids(port, len(recorded)) == recorded
    # Saved while it runs (every second), not only at shutdown: a crash loses at most the last second.
    wait_for(
        lambda: state.exists() and load_last_ids(state, "binance").get("BTCUSDT") == recorded[-1],
        timeout=30,
        what="the state file to hold the last id sent",
    )
    assert first.stop(signal.SIGTERM) == 0
    assert load_last_ids(state, "binance") == {"BTCUSDT": recorded[-1], "ETHUSDT": 5}

    second = spawn(manage(*args), name="sim-2")
    port = wait_for(_port_of(second), timeout=60, what="the simulator to listen")
    ids = _read_ids(port, 100)
    assert ids == list(range(recorded[-1] + 1, recorded[-1] + 101))  # the market goes on: no id issued twice
    assert second.stop(signal.SIGTERM) == 0
    assert load_last_ids(state, "binance")["BTCUSDT"] >= recorded[-1] + 100  # what it produced, sent or queued
    assert json.loads(state.read_text())["exchange"] == "binance"


def test_a_state_file_that_cannot_be_written_is_logged_and_the_market_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from types import SimpleNamespace

    from simulator.feed import TradeStore
    from simulator.management.commands.simulate_exchange import Command

    store = TradeStore()
    store.add(trade("BTCUSDT", 42))
    simulator = SimpleNamespace(feed=SimpleNamespace(store=store), config=SimpleNamespace(exchange="binance"))
    (tmp_path / "a-file").write_text("")
    command = Command()
    command._known_ids = {}
    keeper = command._keep_state(simulator, tmp_path / "a-file" / "state.json", interval=0.01)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):  # still running after several failed turns
        asyncio.run(asyncio.wait_for(keeper, 0.2))
    assert "simulator: state file not written" in caplog.messages


def test_after_a_sigkill_the_state_file_is_whole_and_the_next_run_continues_after_it(
    spawn: Callable[..., ChildProcess], tmp_path: Path
) -> None:
    """A crash leaves the last file written whole (atomic replace); the next run starts right after its ids. Up to
    the last second of ids may then come again with other trades: ingest drops them as already seen."""
    state = tmp_path / "binance.json"
    args = ["simulate_exchange", "--port", "0", "--synthetic", "--rate", "200", "--symbols", "btcusdt"]
    args += ["--state", str(state)]
    first = spawn(manage(*args), name="sim-1")
    port = wait_for(_port_of(first), timeout=60, what="the simulator to listen")
    seen = _read_ids(port, 50)
    wait_for(lambda: state.exists(), timeout=30, what="the first state file")
    ws = connect(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade")
    recv_json(ws)  # the market is running while the process dies
    first.stop(signal.SIGKILL)
    ws.close()
    saved = load_last_ids(state, "binance")["BTCUSDT"]  # parses: no torn file
    assert saved >= seen[-1] - 200  # at most about a second (200 trades/s) behind what went out

    second = spawn(manage(*args), name="sim-2")
    port = wait_for(_port_of(second), timeout=60, what="the simulator to listen")
    assert _read_ids(port, 10) == list(range(saved + 1, saved + 11))
    assert second.stop(signal.SIGTERM) == 0
