"""``make bench``: the full chain at ``--speed 0`` on a fixed workload of real trades, measured end to end.

simulate_exchange (a real Binance recording, looped with shifted ids and times) -> ingest -> Kafka ->
consume_trades (1 and 2 processes) -> PostgreSQL -> Celery worker (update_candles, detect_whales, refresh_stats).

Everything runs in its own corner so the demo's data is never touched: database ``<name>_bench`` (created and
migrated here), topics ``bench.trades.<run>`` / ``bench.dlq.<run>``, group ``bench-<run>``, Redis database
``--redis-db`` for the Celery broker and the channel layer. Topics are deleted and tables emptied afterwards.

Reported per consumer count:
- end-to-end trades/s: trades / (time from the first trade received by ingest to the moment every trade is a durable
  row *and* counted in an updated 1m candle), with the largest consumer lag seen while it ran;
- the consumers' rows/s into PostgreSQL (trades / span of ``stored_at``) and their own store rate;
- candle freshness: for each 1m candle, ``updated_at`` minus the latest ``received_at`` of its trades (p50/p99);
- peak RSS (VmHWM) of every process.
And beside them the naive design: one ORM ``Trade.objects.create()`` per trade, autocommit.

Results go to ``bench-results/pipeline.json`` and a table on stdout. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from benchmarks.harness import ROOT, delete_topics, free_port, manage, peak_rss_mb, process_tree, wait_port
from cryptoproject.timeutil import ms_to_datetime

if TYPE_CHECKING:
    from ingest.records import TradeRecord

DEFAULT_REPLAY = ROOT / "data" / "binance-spot-ws" / "btcusdt_20240809.gz"


@dataclass
class RunResult:
    """The figures of one chain run."""

    source: str
    consumers: int
    offered_rate: float  # the simulator's --max-rate (0: unpaced, as fast as ingest reads)
    trades: int
    stored_rows: int
    candle_trades: int
    seconds: float
    end_to_end_trades_per_s: float
    consumer_rows_per_s: float
    consumer_store_rows_per_s: list[float]
    max_consumer_lag: int
    # Bounded lag: the largest lag in the first and the second half of the run (a growing lag doubles).
    max_lag_first_half: int
    max_lag_second_half: int
    freshness_p50_ms: float | None
    freshness_p99_ms: float | None
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    completed: bool = True


# --------------------------------------------------------------------------------------------- environment
def bench_database_url(base: str, name_suffix: str = "_bench") -> str:
    """The benchmark's own database next to the configured one (``crypto`` -> ``crypto_bench``)."""
    parts = urlsplit(base)
    name = parts.path.lstrip("/") or "crypto"
    return urlunsplit(parts._replace(path=f"/{name}{name_suffix}"))


def redis_url_with_db(base: str, db: int) -> str:
    """``base`` pointing at Redis database ``db``."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{db}"))


def ensure_database(url: str) -> None:
    """Create the benchmark database when missing (connecting to the server's ``postgres`` database)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


# --------------------------------------------------------------------------------------------- the run
class Chain:
    """Starts and watches the processes of one run."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``args`` in the repository with the chain's environment, logging to ``<name>.log``."""
        log = (self.logs / f"{name}.log").open("wb")
        env = dict(self.env, **(extra_env or {}))
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def rss(self) -> dict[str, float]:
        """Peak RSS per process (pool children of Celery included, named worker/<pid>)."""
        result: dict[str, float] = {}
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                continue
            for pid in process_tree(proc.pid):
                key = name if pid == proc.pid else f"{name}/child-{pid}"
                result[key] = round(peak_rss_mb(pid), 1)
        return result

    def check_alive(self, names: list[str]) -> None:
        """Raise ``RuntimeError`` with the log's tail when one of ``names`` has exited."""
        for name in names:
            proc = self.procs[name]
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM every process, then kill those still running after 30 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def run_chain(
    opts: argparse.Namespace, consumers: int, base_env: dict[str, str], logs: Path, max_rate: float = 0.0
) -> RunResult:
    """One full run with ``consumers`` consume_trades processes; ``max_rate`` paces the simulator (0: unpaced)."""
    from django.conf import settings
    from kafka import KafkaConsumer, TopicPartition

    from cryptoproject.celery import app
    from cryptoproject.kafka import TopicSpec, admin_client, client_config, ensure_topics

    run = uuid.uuid4().hex[:8]
    topic, dlq, group = f"bench.trades.{run}", f"bench.dlq.{run}", f"bench-{run}"
    partitions = settings.KAFKA_TRADES_PARTITIONS
    ensure_topics([TopicSpec(topic, partitions, {}), TopicSpec(dlq, 1, {})])
    reset_tables()
    app.control.purge()
    env = dict(base_env, KAFKA_TRADES_TOPIC=topic, KAFKA_DLQ_TOPIC=dlq, KAFKA_CONSUMER_GROUP=group)
    run_logs = logs / (f"consumers-{consumers}" + (f"-paced-{max_rate:.0f}" if max_rate else ""))
    run_logs.mkdir(parents=True, exist_ok=True)
    chain = Chain(env, run_logs)
    port = free_port()
    probe = KafkaConsumer(**client_config(), group_id=group, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    max_lag = 0
    lags: list[tuple[float, int]] = []
    completed = False
    try:
        if opts.source == "kafka":
            prefill(topic, opts.trades, opts.replay)
        chain.start(
            "worker",
            [
                *[sys.executable, "-m", "celery", "-A", "cryptoproject", "worker", "-Q", "analytics,alerts,default"],
                *["-c", str(opts.celery_concurrency), "-n", f"bench-{run}@%h", "--without-gossip", "--without-mingle"],
                *["--loglevel", "WARNING"],
            ],
        )
        started = time.time()
        for i in range(consumers):
            chain.start(
                f"consume_trades-{i}",
                manage("consume_trades", "--batch-size", str(opts.batch_size), "--batch-ms", str(opts.batch_ms)),
            )
        watched = ["worker", *[f"consume_trades-{i}" for i in range(consumers)]]
        if opts.source == "ingest":
            replay = ["--replay", str(opts.replay), "--speed", "0", "--loop", "--max-rate", str(max_rate)]
            sim = manage("simulate_exchange", "--exchange", "binance", "--port", str(port), *replay)
            chain.start("simulator", sim)
            watched.append("simulator")
            wait_port(port, 60)
            started = time.time()
            chain.start(
                "ingest",
                [
                    *manage("ingest", "--exchange", "binance", "--symbols", "btcusdt"),
                    *["--max-trades", str(opts.trades), "--metrics-port", "0"],
                ],
                extra_env={"BINANCE_WS_URL": f"ws://127.0.0.1:{port}", "BINANCE_REST_URL": f"http://127.0.0.1:{port}"},
            )
        deadline = time.monotonic() + opts.timeout
        rss: dict[str, float] = {}
        while time.monotonic() < deadline:
            time.sleep(1.0)
            chain.check_alive(watched)
            ends = probe.end_offsets(tps)
            committed = sum((probe.committed(tp) or 0) for tp in tps)
            lag = sum(ends.values()) - committed
            lags.append((time.time(), lag))
            max_lag = max(max_lag, lag)
            rss.update({k: max(v, rss.get(k, 0.0)) for k, v in chain.rss().items()})
            if committed >= opts.trades and candle_trade_count() >= opts.trades:
                completed = True
                break
        done = time.time()
        rss.update({k: max(v, rss.get(k, 0.0)) for k, v in chain.rss().items()})
        store_rates = consumer_store_rates(base_env)
    finally:
        chain.stop()
        probe.close()
        delete_topics(admin_client, [topic, dlq])
    figures = measure_database()
    # From the first trade ingest received; with a pre-filled topic, from the consumers' start.
    first_received = figures["first_received"] if opts.source == "ingest" and figures["first_received"] else started
    seconds = max(1e-6, done - first_received)
    result = RunResult(
        source=opts.source,
        consumers=consumers,
        offered_rate=max_rate,
        trades=opts.trades,
        stored_rows=figures["rows"],
        candle_trades=figures["candle_trades"],
        seconds=round(seconds, 2),
        end_to_end_trades_per_s=round(figures["rows"] / seconds, 1),
        consumer_rows_per_s=figures["store_rows_per_s"],
        consumer_store_rows_per_s=store_rates,
        max_consumer_lag=max_lag,
        max_lag_first_half=max((lag for t, lag in lags if t < done - seconds / 2), default=0),
        max_lag_second_half=max((lag for t, lag in lags if t >= done - seconds / 2), default=0),
        freshness_p50_ms=figures["fresh_p50"],
        freshness_p99_ms=figures["fresh_p99"],
        peak_rss_mb=rss,
        completed=completed,
    )
    reset_tables()
    return result


def replay_trades(path: Path) -> list[TradeRecord]:
    """The trades of a recorded file, in file order (the simulator's own reader)."""
    from simulator.replay import read_trades

    return list(read_trades(path))


def prefill(topic: str, count: int, path: Path) -> None:
    """Put ``count`` trades on ``topic``: the recording looped with shifted ids and times (as the simulator does)."""
    from kafka import KafkaProducer

    from cryptoproject.kafka import client_config

    base = replay_trades(path)
    id_span = base[-1].trade_id - base[0].trade_id + 1
    time_span = base[-1].trade_time - base[0].trade_time + 1
    producer = KafkaProducer(**client_config(), acks="all", linger_ms=20, batch_size=512 * 1024)
    try:
        for i in range(count):
            loop, r = divmod(i, len(base))
            t = base[r]
            if loop:
                shift = loop * time_span
                t = t._replace(
                    trade_id=t.trade_id + loop * id_span,
                    trade_time=t.trade_time + shift,
                    event_time=t.event_time + shift,
                )
            producer.send(topic, key=t.key, value=t._replace(received_at=int(time.time() * 1000)).encode())
        producer.flush(120)
    finally:
        producer.close()


def reset_tables() -> None:
    """Empty the benchmark database's market-data tables."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE analytics_trade, analytics_candle, analytics_indicatorpoint, analytics_whalealert, "
            "analytics_symbolstats CASCADE"
        )


def candle_trade_count() -> int:
    """Trades counted in stored 1m candles (equals the stored trades once every candle is up to date)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(trade_count), 0) FROM analytics_candle WHERE interval = '1m'")
        return int(cursor.fetchone()[0])


def measure_database() -> dict[str, Any]:
    """Rows, store rate and candle freshness from the stored data."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), extract(epoch FROM min(received_at)), "
            "extract(epoch FROM max(stored_at) - min(stored_at)) FROM analytics_trade"
        )
        rows, first_received, store_span = cursor.fetchone()
        cursor.execute(
            """
            SELECT extract(epoch FROM c.updated_at - max(t.received_at)) * 1000
            FROM analytics_candle c
            JOIN analytics_trade t
              ON t.exchange = c.exchange AND t.symbol = c.symbol
             AND t.traded_at >= c.open_time AND t.traded_at < c.open_time + interval '1 minute'
            WHERE c.interval = '1m'
            GROUP BY c.id, c.updated_at
            ORDER BY 1
            """
        )
        freshness = [float(r[0]) for r in cursor.fetchall()]
    return {
        "rows": int(rows),
        "candle_trades": candle_trade_count(),
        "first_received": float(first_received) if first_received is not None else None,
        "store_rows_per_s": round(int(rows) / float(store_span), 1) if store_span else 0.0,
        "fresh_p50": _round(percentile(freshness, 0.50)),
        "fresh_p99": _round(percentile(freshness, 0.99)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def consumer_store_rates(env: dict[str, str]) -> list[float]:
    """The consumers' own store rates (rows/s inside their transactions) from their Redis snapshots."""
    import redis

    from cryptoproject.kafka_offsets import CONSUMER_METRICS_PREFIX

    client = redis.Redis.from_url(env["REDIS_URL"])
    rates = []
    for key in client.scan_iter(f"{CONSUMER_METRICS_PREFIX}*"):
        raw = client.get(key)
        if raw:
            rates.append(float(json.loads(raw)["store_rows_per_s"]))
    return rates


def naive_rate(trades: int) -> float:
    """Trades/s of one ``Trade.objects.create()`` per trade (autocommit), the design this replaces."""
    from analytics.models import Trade

    base = 1_723_161_255_342
    reset_tables()
    started = time.perf_counter()
    for i in range(trades):
        ms = base + i
        Trade.objects.create(
            exchange="binance",
            symbol="BTCUSDT",
            trade_id=i,
            price="61837.63000000",
            quantity="0.00123000",
            is_buyer_maker=bool(i % 2),
            traded_at=ms_to_datetime(ms),
            received_at=ms_to_datetime(ms),
        )
    rate = trades / (time.perf_counter() - started)
    reset_tables()
    return round(rate, 1)


# --------------------------------------------------------------------------------------------- entry point
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``make bench BENCH_ARGS="..."``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=1_000_000, help="workload size (>= 1,000,000 for the report)")
    parser.add_argument("--consumers", default="1,2", help="consume_trades process counts to try, e.g. 1,2")
    parser.add_argument(
        "--source",
        choices=["ingest", "kafka"],
        default="ingest",
        help="ingest: simulator -> ingest -> Kafka (the full chain); kafka: a pre-filled topic (consumer side only)",
    )
    parser.add_argument(
        "--paced",
        default="20000",
        help="offered rates (trades/s, simulator --max-rate) for extra 1-consumer runs that show the lag stays "
        "bounded at that rate; empty for none",
    )
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--batch-ms", type=int, default=200)
    parser.add_argument("--celery-concurrency", type=int, default=2)
    parser.add_argument("--naive-trades", type=int, default=20_000)
    parser.add_argument("--replay", type=Path, default=DEFAULT_REPLAY)
    parser.add_argument("--redis-db", type=int, default=15, help="Redis database for the bench's broker and layer")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per run")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results" / "pipeline.json")
    return parser.parse_args(argv)


def bench_environment(db_suffix: str, redis_db: int, **extra: str) -> dict[str, str]:
    """The environment of a benchmark and its children: its own database and Redis database, plus ``extra``.

    This process gets the same settings (``DJANGO_SETTINGS_MODULE`` included) before ``django.setup()``.
    """
    base_db = os.environ.get("DATABASE_URL", "postgres://crypto:crypto@127.0.0.1:15432/crypto")
    db_url = bench_database_url(base_db, db_suffix)
    redis_url = redis_url_with_db(os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0"), redis_db)
    ensure_database(db_url)
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        CELERY_RESULT_BACKEND=redis_url,
        CHANNEL_LAYER_URL=redis_url,
        CACHE_URL=redis_url,
        DJANGO_SETTINGS_MODULE="cryptoproject.settings",
        PYTHONPATH=str(ROOT),
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        **extra,
    )
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
    return env


def setup_environment(opts: argparse.Namespace) -> dict[str, str]:
    """Point this process and its children at the benchmark's database and Redis database."""
    return bench_environment("_bench", opts.redis_db)


def main(argv: list[str] | None = None) -> int:
    """Run every configuration, write the JSON and print the table."""
    opts = parse_args(argv)
    env = setup_environment(opts)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    logs = opts.output.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    runs = [run_chain(opts, int(n), env, logs) for n in opts.consumers.split(",") if n.strip()]
    if opts.source == "ingest":
        runs += [run_chain(opts, 1, env, logs, float(rate)) for rate in opts.paced.split(",") if rate.strip()]
    naive = naive_rate(opts.naive_trades)
    # The best rate of the unpaced runs (a paced run's rate is what it was offered), unless only paced ones ran.
    best = max([r for r in runs if not r.offered_rate] or runs, key=lambda r: r.end_to_end_trades_per_s)
    report = {
        "workload": {
            "trades": opts.trades,
            "replay": str(opts.replay),
            "speed": 0,
            "loop": True,
            "source": opts.source,
        },
        "settings": {"batch_size": opts.batch_size, "batch_ms": opts.batch_ms, "celery": opts.celery_concurrency},
        "runs": [asdict(r) for r in runs],
        "naive_orm_create_trades_per_s": naive,
        "naive_trades": opts.naive_trades,
        "best_end_to_end_trades_per_s": best.end_to_end_trades_per_s,
        "ratio_vs_naive": round(best.end_to_end_trades_per_s / naive, 1) if naive else None,
        "target_trades_per_s": 20_000,
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "note": "shared 2-core machine; other processes ran at the same time, so figures are noisy",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    return 0 if all(r.completed for r in runs) else 1


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    lines = [
        f"workload: {report['workload']['trades']:,} trades (looped {Path(report['workload']['replay']).name})",
        f"{'consumers':>9} {'offered/s':>10} {'e2e trades/s':>13} {'rows/s':>10} {'max lag 1st/2nd half':>21} "
        f"{'fresh p50':>10} "
        f"{'p99 ms':>9} "
        f"{'peak RSS MB (max)':>18} {'done':>5}",
    ]
    for r in report["runs"]:
        peak = max(r["peak_rss_mb"].values()) if r["peak_rss_mb"] else 0.0
        offered = f"{r['offered_rate']:,.0f}" if r["offered_rate"] else "unpaced"
        lines.append(
            f"{r['consumers']:>9} {offered:>10} {r['end_to_end_trades_per_s']:>13,.0f} "
            f"{r['consumer_rows_per_s']:>10,.0f} "
            f"{r['max_lag_first_half']:>10,}/{r['max_lag_second_half']:<10,} "
            f"{r['freshness_p50_ms'] or 0:>10,.0f} {r['freshness_p99_ms'] or 0:>9,.0f} "
            f"{peak:>18.0f} {'yes' if r['completed'] else 'NO':>5}"
        )
        for name, mb in sorted(r["peak_rss_mb"].items()):
            lines.append(f"{'':>12}{name}: {mb:.0f} MB")
    lines.append(
        f"naive ORM create() per trade: {report['naive_orm_create_trades_per_s']:,.0f} trades/s "
        f"({report['naive_trades']:,} trades); best chain is {report['ratio_vs_naive']}x that"
    )
    lines.append(report["note"])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
