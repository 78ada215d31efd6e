"""Pure parts of the consumer (no servers): configuration, the trade tape, window merging, metrics; and the
benchmark's helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analytics.consumer import Batch, ConsumerConfig
from analytics.consumer.metrics import ConsumerMetrics
from analytics.live import TapePublisher
from analytics.payloads import trade_item_from_record
from analytics.storage import StoreResult
from analytics.windows import SymbolWindow
from benchmarks import pipeline
from ingest.records import TradeRecord

pytestmark = pytest.mark.unit

T0 = 1_723_161_255_342


def rec(trade_id: int, t: int, symbol: str = "BTCUSDT") -> TradeRecord:
    return TradeRecord("binance", symbol, trade_id, "1.5", "2", trade_id % 2 == 0, t, t, t)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_ms": 0}, "batch_ms"),
        ({"max_records": 0}, "max_records"),
        ({"idle_exit_s": 0}, "idle_exit_s"),
    ],
)
def test_config_refuses_nonsense(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConsumerConfig(**kwargs)


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, messages: Any) -> int:
        items = list(messages)
        self.messages.extend(items)
        return len(items)


def test_tape_keeps_the_newest_50_newest_last_and_throttles_per_symbol():
    sent = Sent()
    tape = TapePublisher(interval=0.25, send=sent)
    # Out of order on purpose: the push must still end with the newest trade.
    tape.add([rec(i, T0 + i) for i in range(120, 0, -1)])
    tape.add([rec(1, T0, symbol="ETHUSDT")])
    assert tape.flush(now=100.0) == 2
    by_group = dict(sent.messages)
    btc = by_group["market.binance.btcusdt"]
    assert btc["kind"] == "trades"
    assert (btc["exchange"], btc["symbol"]) == ("binance", "BTCUSDT")
    ids = [t["trade_id"] for t in btc["trades"]]
    # The newest 50 of what was queued (deque keeps the last 50 added: ids 50..1), sorted oldest first.
    assert ids == list(range(1, 51))
    assert btc["trades"][-1] == trade_item_from_record(rec(50, T0 + 50))
    assert btc["trades"][-1]["t"] == T0 + 50
    assert by_group["market.binance.ethusdt"]["trades"][0]["trade_id"] == 1
    assert tape.pending == 0


def test_tape_skips_a_trade_no_column_could_hold_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    """A price of 1e999999 passes the decoder (a finite positive decimal), and no numeric(30, 12) holds it.

    The chaos suite's hostile records include it: the store refuses it (a dead letter), and before the consumer
    passed only stored trades to the tape, building its tape item raised decimal.InvalidOperation and the consumer
    crashed on every restart.
    """
    sent = Sent()
    tape = TapePublisher(interval=0.25, send=sent)
    huge = TradeRecord("binance", "BTCUSDT", 7, "1e999999", "2", True, T0, T0, T0)
    tape.add([rec(1, T0), huge, rec(2, T0 + 1)])
    tape.add([TradeRecord("binance", "ETHUSDT", 8, "1e999999", "2", True, T0, T0, T0)])
    assert tape.flush(now=100.0) == 1  # ETHUSDT had nothing left to push
    ((group, push),) = sent.messages
    assert group == "market.binance.btcusdt"
    assert [t["trade_id"] for t in push["trades"]] == [1, 2]
    assert "live tape: a trade skipped" in caplog.text


def test_tape_coalesces_while_throttled_and_delivers_the_last_trades_later():
    sent = Sent()
    tape = TapePublisher(interval=0.25, send=sent)
    tape.add([rec(1, T0)])
    assert tape.flush(now=10.0) == 1
    tape.add([rec(2, T0 + 1)])
    tape.add([rec(3, T0 + 2)])
    assert tape.flush(now=10.1) == 0  # throttled: kept, not dropped
    assert tape.pending == 1
    assert tape.flush(now=10.3) == 1
    assert [t["trade_id"] for t in sent.messages[-1][1]["trades"]] == [2, 3]
    assert tape.flush(now=20.0) == 0  # nothing left to send


def test_adding_store_results_combines_windows_per_symbol():
    a = StoreResult(
        received=3,
        inserted=2,
        windows=[SymbolWindow("binance", "BTCUSDT", 10, 20, 2), SymbolWindow("binance", "ETHUSDT", 5, 5, 1)],
    )
    b = StoreResult(
        received=2,
        inserted=1,
        windows=[SymbolWindow("binance", "BTCUSDT", 1, 15, 2)],
    )
    merged = a + b
    assert (merged.received, merged.inserted, merged.duplicates) == (5, 3, 2)
    assert merged.windows == [SymbolWindow("binance", "BTCUSDT", 1, 20, 4), SymbolWindow("binance", "ETHUSDT", 5, 5, 1)]


def test_metrics_snapshot_accounts_batches_and_rates():
    metrics = ConsumerMetrics()
    assert metrics.snapshot()["store_rows_per_s"] == 0.0
    metrics.record_batch(StoreResult(received=1000, inserted=900), store_seconds=0.5, latency_s=0.2)
    metrics.record_batch(StoreResult(received=1000, inserted=1000), store_seconds=0.5, latency_s=0.1)
    metrics.lag = {"t:0": 5, "t:1": 7}
    snap = metrics.snapshot()
    assert snap["stored"] == 1900
    assert snap["duplicates"] == 100
    assert snap["batches"] == 2
    assert snap["store_rows_per_s"] == 2000.0
    assert snap["last_batch_latency_ms"] == 100.0
    assert snap["max_batch_latency_ms"] == 200.0
    assert snap["lag_total"] == 12


def test_empty_batch_is_falsy():
    batch = Batch()
    assert not batch
    assert batch.consumed == 0


def test_bench_helpers():
    assert pipeline.bench_database_url("postgres://u:p@h:5/crypto") == "postgres://u:p@h:5/crypto_bench"
    assert pipeline.redis_url_with_db("redis://h:1/0", 15) == "redis://h:1/15"
    assert pipeline.percentile([], 0.5) is None
    assert pipeline.percentile([1.0, 2.0, 3.0, 4.0, 100.0], 0.5) == 3.0
    assert pipeline.percentile([1.0, 2.0, 3.0, 4.0, 100.0], 0.99) == 100.0
    opts = pipeline.parse_args(["--trades", "10", "--consumers", "2", "--source", "kafka"])
    assert (opts.trades, opts.consumers, opts.source) == (10, "2", "kafka")


def test_bench_replay_reads_the_real_recording():
    trades = pipeline.replay_trades(Path(pipeline.DEFAULT_REPLAY))
    # data/README.md: 10,147 trades, ids 3735693016..3735703162.
    assert len(trades) == 10_147
    assert (trades[0].trade_id, trades[-1].trade_id) == (3735693016, 3735703162)


def test_bench_table_formats_every_run():
    run = {
        "consumers": 2,
        "offered_rate": 0.0,
        "end_to_end_trades_per_s": 21000.0,
        "consumer_rows_per_s": 50000.0,
        "max_consumer_lag": 1234,
        "max_lag_first_half": 1234,
        "max_lag_second_half": 987,
        "freshness_p50_ms": 300.0,
        "freshness_p99_ms": 900.0,
        "peak_rss_mb": {"worker": 120.0, "consume_trades-0": 90.0},
        "completed": True,
    }
    report = {
        "workload": {"trades": 1_000_000, "replay": "x/btcusdt_20240809.gz"},
        "runs": [run, {**run, "consumers": 1, "offered_rate": 20000.0, "end_to_end_trades_per_s": 19876.0}],
        "naive_orm_create_trades_per_s": 1000.0,
        "naive_trades": 20000,
        "ratio_vs_naive": 21.0,
        "note": "noisy",
    }
    table = pipeline.format_table(report)
    assert "1,000,000 trades" in table
    assert "21,000" in table
    assert "unpaced" in table
    assert "1,234/987" in table
    assert "    20,000        19,876" in table
    assert "worker: 120 MB" in table
    assert "21.0x" in table
