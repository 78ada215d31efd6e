"""``make bench-ingest``: simulator (--speed 0, looped real trades) -> ingest -> Kafka, measured end to end.

Reports sustained trades/s from WebSocket receipt to broker acknowledgement (ingest's own clock: first trade
received -> last ack), the ingest process's CPU time (user + system, from ``wait4``) and its peak RSS (VmHWM).
The simulator and the broker share the machine, so the figure is a floor for ingest alone.

    python -m benchmarks.ingest [--trades 500000] [--replay FILE] [--exchanges binance,okx] [--profile out.txt]
                                [--py-spy stacks.txt]

``--exchanges``: one run per registered exchange, one right after the other (the first is the same run's reference):
the simulator serves the recording relabelled into that exchange's protocol (its spelling, frames and REST), ingest
reads it with that exchange's adapter. OKX's simulator aggregates a taker order's fills into one trade as OKX does,
so its runs publish fewer, larger trades from the same recording.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, cpu_seconds, delete_topics, peak_rss_mb, setup_django, wait_listening

DEFAULT_REPLAY = ROOT / "data" / "binance-spot-ws" / "btcusdt_20240808.gz"


def _records_on(topic: str) -> int:
    """How many records ``topic`` holds (the sum of its partitions' end offsets), read back from the broker."""
    from kafka import KafkaConsumer, TopicPartition

    from cryptoproject.kafka import client_config

    consumer = KafkaConsumer(**client_config())
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def _final_metrics(output: str) -> dict[str, Any]:
    import orjson

    for line in reversed(output.splitlines()):
        if '"ingest stopped"' in line:
            metrics: dict[str, Any] = orjson.loads(line)["metrics"]
            return metrics
    raise SystemExit(f"ingest printed no final metrics:\n{output[-3000:]}")


def run(
    trades: int, replay: Path, profile: str | None, py_spy: str | None = None, exchange: str = "binance"
) -> dict[str, Any]:
    """Run one measurement of ``exchange``'s ingest and return the figures."""
    setup_django()
    from cryptoproject.kafka import TopicSpec, admin_client, ensure_topics
    from ingest.exchanges import get
    from simulator.feed import exchange_symbol

    descriptor = get(exchange)
    symbol = exchange_symbol(exchange, "BTCUSDT")

    suffix = uuid.uuid4().hex[:10]
    topic, dlq = f"bench.trades.{suffix}", f"bench.dlq.{suffix}"
    ensure_topics([TopicSpec(topic, 6, {}), TopicSpec(dlq, 1, {})])
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    sim_log, ingest_log = workdir / "simulator.log", workdir / "ingest.log"
    python = sys.executable
    env = dict(os.environ, PYTHONPATH=str(ROOT), LOG_LEVEL="WARNING")
    sim = subprocess.Popen(
        [
            python,
            "manage.py",
            "simulate_exchange",
            "--exchange",
            exchange,
            "--port",
            "0",
            "--replay",
            str(replay),
            "--speed",
            "0",
            "--loop",
            "--ping-interval",
            "0",
        ],
        cwd=ROOT,
        env=dict(env, LOG_LEVEL="INFO"),
        stdout=sim_log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        port = wait_listening(sim_log, sim)
        ingest_env = dict(
            env,
            LOG_LEVEL="INFO",
            KAFKA_TRADES_TOPIC=topic,
            KAFKA_DLQ_TOPIC=dlq,
            **{descriptor.ws_url_setting: f"ws://127.0.0.1:{port}"},
            **({descriptor.rest_url_setting: f"http://127.0.0.1:{port}"} if descriptor.rest_url_setting else {}),
        )
        argv = [python]
        if py_spy:
            # py-spy sees every thread (cProfile only the main one); the raw format is collapsed stacks.
            spy = Path(python).parent / "py-spy"
            argv = [str(spy) if spy.exists() else "py-spy", "record", "--threads", "--format", "raw"]
            argv += ["--output", py_spy, "--", python]
        if profile:
            argv += ["-m", "cProfile", "-o", profile]
        argv += ["manage.py", "ingest", "--exchange", exchange, "--symbols", symbol, "--channels", "trades"]
        argv += ["--max-trades", str(trades), "--metrics-port", "0", "--metrics-interval", "5"]
        started = time.monotonic()
        ingest = subprocess.Popen(
            argv, cwd=ROOT, env=ingest_env, stdout=ingest_log.open("wb"), stderr=subprocess.STDOUT
        )
        peak_mb = 0.0
        while True:
            # wait4 reaps the child and returns its rusage: exact CPU time and max RSS of the process itself.
            pid, status, usage = os.wait4(ingest.pid, os.WNOHANG)
            if pid:
                break
            peak_mb = max(peak_mb, peak_rss_mb(ingest.pid))
            time.sleep(0.25)
        wall = time.monotonic() - started
        code = os.waitstatus_to_exitcode(status)
        ingest.returncode = code
        output = ingest_log.read_text(errors="replace")
        if code != 0:
            raise SystemExit(f"ingest exited with {code}:\n{output[-3000:]}")
        metrics = _final_metrics(output)
        on_topic = _records_on(topic)
    finally:
        sim_cpu = cpu_seconds(sim.pid)
        sim.terminate()
        sim.wait(30)
        delete_topics(admin_client, [topic, dlq])
    published = metrics["trades_published"]
    return {
        "exchange": exchange,
        "trades": published,
        "records_on_topic": on_topic,
        "trades_per_s": metrics.get("throughput_trades_per_s"),
        "process_wall_s": round(wall, 2),
        "cpu_user_s": round(usage.ru_utime, 2),
        "cpu_system_s": round(usage.ru_stime, 2),
        "cpu_per_trade_us": round((usage.ru_utime + usage.ru_stime) / max(published, 1) * 1e6, 2),
        "peak_rss_mb": round(max(usage.ru_maxrss / 1024, peak_mb), 1),
        "simulator_cpu_s": None if sim_cpu is None else round(sim_cpu, 2),
        "publish_latency_avg_ms": metrics.get("publish_latency_avg_ms"),
        "publish_latency_p99_le_ms": metrics.get("publish_latency_p99_le_ms"),
        "gaps": metrics.get("gaps"),
        "malformed": metrics.get("malformed"),
        "publish_errors": metrics.get("publish_errors"),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=500_000, help="workload (trades published)")
    parser.add_argument("--replay", type=Path, default=DEFAULT_REPLAY, help="recorded file, looped")
    parser.add_argument("--profile", help="write a cProfile of the ingest process to this file")
    parser.add_argument("--py-spy", help="record the ingest process with py-spy (all threads) to this file")
    parser.add_argument(
        "--exchanges", default="binance", help="registered exchanges, run one after the other (the first: reference)"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.exchanges.split(",") if n.strip()]
    results = [run(args.trades, args.replay, args.profile, args.py_spy, name) for name in names]
    width = max(len(k) for k in results[0])
    print("ingest benchmark: simulator --speed 0 --loop -> manage.py ingest -> Kafka (acks=all)")
    for key in results[0]:
        print(f"  {key:<{width}}  " + "  ".join(f"{r[key]!s:>14}" for r in results))
    if len(results) > 1:
        reference = results[0]["trades_per_s"] or 0
        for r in results[1:]:
            ratio = (r["trades_per_s"] or 0) / reference if reference else 0
            print(f"  {r['exchange']} / {results[0]['exchange']}: {ratio:.2f}x trades/s")
    print("  (target >= 30,000 trades/s; the machine is shared, so figures are noisy)")


if __name__ == "__main__":
    main()
