"""Unit tests of the latency benchmark's measurement (``benchmarks/latency.py``): no servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.latency import Samples, format_table, parse_args, summarise, trade_latencies


def push(*stamps: object) -> dict[str, object]:
    return {
        "kind": "trades",
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "trades": [{"trade_id": 1, "t": t} for t in stamps],
    }


def test_trade_latencies_are_receive_time_minus_event_time() -> None:
    assert trade_latencies(push(1_000, 1_150), 1_200.0) == [200.0, 50.0]
    # Malformed stamps (missing, text, booleans) are skipped, not guessed.
    assert trade_latencies(push(None, "1000", True, 900), 1_000.0) == [100.0]
    assert trade_latencies({"kind": "trades", "trades": ["x"]}, 1.0) == []


def test_samples_count_only_while_measuring_and_split_kinds() -> None:
    samples = Samples()
    samples.add(push(0), 500.0, measuring=False)
    samples.add({"kind": "candles", "candles": []}, 600.0, measuring=True)
    samples.add(push(100, 400), 600.0, measuring=True)
    samples.add(push(), 700.0, measuring=True)  # an empty push carries no trade
    assert samples.trade_ms == [500.0, 200.0]
    assert samples.newest_ms == [200.0]
    assert samples.pushes == 1
    assert samples.other_pushes == 1


def test_summarise_percentiles() -> None:
    summary = summarise([float(v) for v in range(1, 101)])
    assert summary["count"] == 100
    assert summary["p50_ms"] == 51.0
    assert summary["p95_ms"] == 95.0
    assert summary["p99_ms"] == 99.0
    assert summary["max_ms"] == 100.0
    assert summarise([]) == {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}


def test_table_names_the_target_verdict() -> None:
    stats = summarise([10.0, 20.0, 300.0])
    report = {
        "workload": {"rate": 1000, "symbols": ["BTCUSDT"], "duration_s": 60.0, "warmup_s": 10.0},
        "settings": {"batch_ms": 50},
        "trades": stats,
        "newest": summarise([]),
        "pushes": 3,
        "pushes_per_s": 0.05,
        "other_pushes": 2,
        "p99_within_target": False,
        "note": "noisy",
    }
    table = format_table(report)
    assert "1,000 trades/s" in table
    assert "300.0" in table
    assert "NOT met" in table
    assert "newest trade of each push" in table


def test_arguments() -> None:
    opts = parse_args(["--rate", "500", "--symbols", "btcusdt, ethusdt", "--output", "/tmp/x.json"])
    assert opts.rate == 500
    assert opts.symbol_list == ["BTCUSDT", "ETHUSDT"]
    assert opts.output == Path("/tmp/x.json")
    with pytest.raises(SystemExit):
        parse_args(["--rate", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--symbols", " , "])
