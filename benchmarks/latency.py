"""``make bench-latency``: exchange event time -> browser, at 1,000 trades/s from the simulator.

simulate_exchange --synthetic --rate N (Binance protocol, trade times stamped by the simulator's clock as it sends)
-> ingest -> Kafka -> consume_trades -> Channels (Redis layer) -> daphne -> WebSocket clients connected to
``ws/market/<exchange>/<symbol>/`` exactly like the symbol page's browser tab (same origin check, same consumer).
A Celery worker runs too, so candles, stats and whales load the machine as they do in production.

For every trade of every ``trades`` push a client receives: latency = receive time - the trade's event time ``T``.
Reported: p50/p95/p99/max over the measuring window (after a warm-up), the push rate and how many trades the pushes
carried (the tape is coalesced to the newest 50 per push, ~4 pushes per second per symbol, by design). The latency of
the *newest* trade of each push (how stale the top of the tape is) is reported beside it.

Everything runs in its own corner: database ``<name>_latency``, topics ``latency.trades.<run>``, group
``latency-<run>``, Redis database ``--redis-db``. Results: ``bench-results/latency.json`` and a table on stdout.
The machine is shared: the figures are noisy, and client, server and pipeline share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, delete_topics, free_port, manage, port_open
from benchmarks.pipeline import (
    Chain,
    bench_environment,
    percentile,
    reset_tables,
)

TARGET_P99_MS = 250.0


@dataclass
class Samples:
    """What the WebSocket clients saw."""

    trade_ms: list[float] = field(default_factory=list)  # every trade of every push
    newest_ms: list[float] = field(default_factory=list)  # the newest trade of each push
    pushes: int = 0
    other_pushes: int = 0  # candles, stats, whales

    def add(self, payload: dict[str, Any], received_ms: float, measuring: bool) -> None:
        """Record one decoded push received at ``received_ms`` (epoch ms); only counted while ``measuring``."""
        if not measuring:
            return
        if payload.get("kind") != "trades":
            self.other_pushes += 1
            return
        latencies = trade_latencies(payload, received_ms)
        if not latencies:
            return
        self.pushes += 1
        self.trade_ms.extend(latencies)
        self.newest_ms.append(min(latencies))


def trade_latencies(payload: dict[str, Any], received_ms: float) -> list[float]:
    """Receive time minus each trade's time ``t`` (epoch ms) for one ``trades`` push (malformed trades skipped)."""
    result = []
    for trade in payload.get("trades", []):
        stamp = trade.get("t") if isinstance(trade, dict) else None
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            result.append(received_ms - float(stamp))
    return result


def summarise(values: list[float]) -> dict[str, float | int | None]:
    """count, p50, p95, p99 and max of a list of milliseconds (rounded to 0.1 ms)."""
    ordered = sorted(values)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    return {
        "count": len(ordered),
        "p50_ms": r(percentile(ordered, 0.50)),
        "p95_ms": r(percentile(ordered, 0.95)),
        "p99_ms": r(percentile(ordered, 0.99)),
        "max_ms": r(ordered[-1] if ordered else None),
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    w = report["workload"]
    lines = [
        f"workload: {w['rate']:,} trades/s synthetic ({', '.join(w['symbols'])}), {w['duration_s']:.0f} s measured "
        f"after {w['warmup_s']:.0f} s warm-up; consume_trades --batch-ms {report['settings']['batch_ms']}",
        f"{'latency (event time -> client)':<34} {'count':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}",
    ]
    for label, key in (("every trade in a push", "trades"), ("newest trade of each push", "newest")):
        s = report[key]

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:,.1f}"

        lines.append(
            f"{label:<34} {s['count']:>8,} {f(s['p50_ms']):>8} {f(s['p95_ms']):>8} {f(s['p99_ms']):>8} "
            f"{f(s['max_ms']):>8}"
        )
    verdict = report["p99_within_target"]
    lines.append(
        f"pushes: {report['pushes']:,} trade pushes ({report['pushes_per_s']:.1f}/s), "
        f"{report['other_pushes']:,} candle/stats/whale pushes; "
        f"target p99 < {TARGET_P99_MS:.0f} ms: {'met' if verdict else 'NOT met' if verdict is False else 'no data'}"
    )
    lines.append(f"note: {report['note']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- the run
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, validated (a parser error for a non-positive rate or duration, or no symbols)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="synthetic trades per second, all symbols (1000)")
    parser.add_argument("--symbols", default="BTCUSDT", help="comma-separated Binance symbols (BTCUSDT)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured (60)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds ignored first (10)")
    parser.add_argument("--batch-ms", type=int, default=50, help="consume_trades --batch-ms (50)")
    parser.add_argument("--celery-concurrency", type=int, default=2)
    parser.add_argument("--redis-db", type=int, default=14, help="Redis database for broker and channel layer (14)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results" / "latency.json")
    opts = parser.parse_args(argv)
    if opts.rate <= 0 or opts.duration <= 0 or opts.warmup < 0:
        parser.error("--rate and --duration must be positive, --warmup at least 0")
    opts.symbol_list = [s.strip().upper() for s in opts.symbols.split(",") if s.strip()]
    if not opts.symbol_list:
        parser.error("--symbols: give at least one symbol")
    return opts


def setup_environment(opts: argparse.Namespace) -> dict[str, str]:
    """Point this process and its children at the benchmark's own database, Redis database and Kafka names."""
    run = uuid.uuid4().hex[:8]
    return bench_environment(
        "_latency",
        opts.redis_db,
        KAFKA_TRADES_TOPIC=f"latency.trades.{run}",
        KAFKA_DLQ_TOPIC=f"latency.dlq.{run}",
        KAFKA_CONSUMER_GROUP=f"latency-{run}",
        DASHBOARD_LOGIN_REQUIRED="false",
    )


def _wait(condition: Any, timeout: float, what: str, chain: Chain, names: list[str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chain.check_alive(names)
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


async def listen(url: str, origin: str, samples: Samples, start_measuring: float, stop_at: float) -> None:
    """One browser-like WebSocket client: records every push until ``stop_at`` (time.time())."""
    import websockets

    async with websockets.connect(url, origin=origin, compression=None, max_size=2**22) as ws:  # type: ignore[arg-type]
        while True:
            remaining = stop_at - time.time()
            if remaining <= 0:
                return
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=remaining)
            except TimeoutError:
                return
            received = time.time() * 1000.0
            samples.add(json.loads(raw), received, received / 1000.0 >= start_measuring)


def run(opts: argparse.Namespace, env: dict[str, str], logs: Path) -> dict[str, Any]:
    """Start the chain, connect the clients, feed at ``--rate`` and measure."""
    from django.conf import settings

    from cryptoproject.celery import app
    from cryptoproject.kafka import TopicSpec, admin_client, ensure_topics

    topic, dlq = env["KAFKA_TRADES_TOPIC"], env["KAFKA_DLQ_TOPIC"]
    ensure_topics([TopicSpec(topic, settings.KAFKA_TRADES_PARTITIONS, {}), TopicSpec(dlq, 1, {})])
    # Synthetic ids restart every run: earlier rows would make this run's trades duplicates.
    reset_tables()
    chain = Chain(env, logs)
    web_port = free_port()
    try:
        chain.start(
            "worker",
            [
                *(sys.executable, "-m", "celery", "-A", "cryptoproject", "worker", "-Q", "analytics,alerts,default"),
                *("-c", str(opts.celery_concurrency), "-n", f"latency-{uuid.uuid4().hex[:6]}@%h"),
                *("--without-gossip", "--without-mingle", "--loglevel", "WARNING"),
            ],
        )
        chain.start(
            "daphne",
            [str(ROOT / ".venv/bin/daphne"), "-b", "127.0.0.1", "-p", str(web_port), "cryptoproject.asgi:application"],
        )
        chain.start("consume", manage("consume_trades", "--batch-ms", str(opts.batch_ms)))
        _wait(lambda: port_open(web_port), 60, "daphne", chain, ["daphne"])
        _wait(lambda: app.control.ping(timeout=0.5), 60, "the Celery worker", chain, ["worker"])

        sim_port = free_port()
        chain.start(
            "simulator",
            [
                *manage("simulate_exchange", "--exchange", "binance", "--port", str(sim_port), "--synthetic"),
                *("--rate", str(opts.rate), "--symbols", ",".join(opts.symbol_list), "--start-delay", "2"),
            ],
        )
        _wait(lambda: port_open(sim_port), 60, "the simulator", chain, ["simulator"])

        samples = Samples()
        started = time.time()
        start_measuring = started + opts.warmup
        stop_at = start_measuring + opts.duration
        origin = f"http://127.0.0.1:{web_port}"
        urls = [f"ws://127.0.0.1:{web_port}/ws/market/binance/{s}/" for s in opts.symbol_list]

        async def clients() -> None:
            tasks = [asyncio.create_task(listen(u, origin, samples, start_measuring, stop_at)) for u in urls]
            await asyncio.sleep(1.0)  # the clients are subscribed before the first trade
            chain.start(
                "ingest",
                [
                    *manage("ingest", "--exchange", "binance", "--symbols", ",".join(opts.symbol_list).lower()),
                    "--channels",
                    "trades",
                    "--metrics-port",
                    "0",
                ],
                extra_env={
                    "BINANCE_WS_URL": f"ws://127.0.0.1:{sim_port}",
                    "BINANCE_REST_URL": f"http://127.0.0.1:{sim_port}",
                },
            )
            await asyncio.gather(*tasks)

        asyncio.run(clients())
        chain.check_alive(["daphne", "consume", "worker", "simulator", "ingest"])
    finally:
        chain.stop()
        delete_topics(admin_client, [topic, dlq])

    trades, newest = summarise(samples.trade_ms), summarise(samples.newest_ms)
    p99 = trades["p99_ms"]
    return {
        "workload": {
            "rate": opts.rate,
            "symbols": opts.symbol_list,
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "source": "simulate_exchange --synthetic (Binance protocol)",
        },
        "settings": {"batch_ms": opts.batch_ms, "celery": opts.celery_concurrency, "tape_push_interval_ms": 250},
        "trades": trades,
        "newest": newest,
        "pushes": samples.pushes,
        "pushes_per_s": round(samples.pushes / opts.duration, 2),
        "other_pushes": samples.other_pushes,
        "target_p99_ms": TARGET_P99_MS,
        "p99_within_target": None if p99 is None else bool(p99 < TARGET_P99_MS),
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "note": "shared 2-core machine: simulator, ingest, Kafka, PostgreSQL, Redis, Celery, daphne and the clients "
        "all ran on it with other work, so figures are noisy",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    """Run once, write the JSON and print the table; exit 1 when no push arrived."""
    opts = parse_args(argv)
    env = setup_environment(opts)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    logs = opts.output.parent / "logs" / "latency"
    logs.mkdir(parents=True, exist_ok=True)
    report = run(opts, env, logs)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    return 0 if report["trades"]["count"] else 1


if __name__ == "__main__":
    sys.exit(main())
