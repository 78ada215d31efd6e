"""``make bench-peer``: this project's ingest and storage chain against cryptofeed, on the same simulator stream.

Both sides read the same finite market (``--trades`` real BTCUSDT trades, the bundled recording looped with
shifted ids, written once to a file and replayed by ``simulate_exchange --speed 0``, one fresh simulator per run)
and write with the same Kafka durability (``acks=all``, idempotent producer). cryptofeed runs in its own
virtualenv (``.venv-peer``, ``requirements/peer.txt``) through ``benchmarks/peer_cryptofeed.py``; only its Binance
endpoints are moved to the simulator (it subscribes to ``@aggTrade``, which the simulator serves).

Cases:
- ceilings: each stage of ingest alone on the same trades (``benchmarks/peer_ceilings.py``): receive, parse,
  publish; their CPU per trade adds up to what no ingest on these libraries goes below;
- ingest: simulator -> ``manage.py ingest`` -> Kafka, against cryptofeed's Kafka backend;
- storage: simulator -> ingest -> Kafka -> ``consume_trades`` -> PostgreSQL with 1m candles (Celery worker), rows
  durable, against cryptofeed's Postgres backend (trades only);
- drops: the ingest case with the simulator dropping every WebSocket connection after ``--drop-every`` frames;
- duplicates: the storage case on two overlapping replays (``--overlap`` of the trades arrive twice), unpaced and
  paced at ``--paced-rate`` trades/s (below cryptofeed's own rate, so its writer sees small batches as in a live
  market rather than one backlog).

Measured from outside, the same way for both: the window opens when the simulator's feed starts (the side has
connected and subscribed; this project's chain has its partitions and its worker before that) and closes at the
last change of what the side stored (polled every 0.1 s; one Kafka consumer kept for the run counts a topic), so
start-up is excluded on both sides and everything a side buffers is included. trades/s = trades stored in the
window / its length; CPU (user + system) of every process of that side (the simulator and the servers excluded)
in the window per stored trade, also per process; peak RSS (VmHWM; summed over a chain's processes);
completeness = distinct offered trades stored / trades offered; duplicates = stored records - distinct trades.
Results: ``bench-results/peer.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from benchmarks.harness import ROOT, cpu_seconds, delete_topics, manage, peak_rss_mb, process_tree, wait_listening
from benchmarks.pipeline import bench_environment

if TYPE_CHECKING:
    from ingest.records import TradeRecord

DEFAULT_REPLAY = ROOT / "data" / "binance-spot-ws" / "btcusdt_20240808.gz"
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
CF_TABLE = "cryptofeed_trades"
FEED_STARTED = "simulator: feed started"  # simulator.feed logs it when the first client has subscribed
# cryptofeed's documented trades table, plus the unique key its backend expects (it catches UniqueViolationError
# "when restarting a subscription, some exchanges will re-publish a few messages").
CF_SCHEMA = f"""
DROP TABLE IF EXISTS {CF_TABLE};
CREATE TABLE {CF_TABLE} (id serial PRIMARY KEY, timestamp TIMESTAMP, receipt_timestamp TIMESTAMP,
    exchange VARCHAR(32), symbol VARCHAR(32), side VARCHAR(8), amount NUMERIC(64, 32), price NUMERIC(64, 32),
    trade_id VARCHAR(64), order_type VARCHAR(32), UNIQUE (exchange, symbol, trade_id));
"""


@dataclass
class Side:
    """One side of one case."""

    trades_per_s: float | None
    cpu_us_per_trade: float | None
    peak_rss_mb: float
    completeness: float
    duplicates: int
    offered: int
    stored: int
    distinct: int
    seconds: float
    cpu_s: float
    processes: dict[str, float] = field(default_factory=dict)  # peak RSS MB per process
    cpu_us_per_trade_by_process: dict[str, float] = field(default_factory=dict)  # inside the window


class Usage:
    """CPU and peak RSS of named process trees, sampled while they run (the last sample is the CPU used)."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cpu: dict[int, float] = {}
        self.rss: dict[str, float] = {}
        self.names: dict[int, str] = {}

    def watch(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Measure ``proc``'s process tree under ``name`` from the next :meth:`sample` on."""
        self.procs[name] = proc

    def sample(self) -> None:
        """Record each watched tree's CPU seconds (latest) and peak RSS in MB (maximum so far)."""
        for name, proc in self.procs.items():
            for pid in process_tree(proc.pid):
                cpu = cpu_seconds(pid)
                if cpu is not None:
                    self.cpu[pid] = cpu
                key = name if pid == proc.pid else f"{name}/{pid}"
                self.names[pid] = key
                self.rss[key] = max(self.rss.get(key, 0.0), round(peak_rss_mb(pid), 1))

    def check_alive(self, logs: Path) -> None:
        """Raise ``RuntimeError`` with the log's tail when a watched process has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")


class Run:
    """The processes of one measurement, their logs and their teardown."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.usage = Usage()
        self._feed_started = False

    def start(self, name: str, argv: list[str], measured: bool = True, **extra: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the repository with the run's environment plus ``extra``, logging to ``<name>.log``."""
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, cwd=ROOT, env=dict(self.env, **extra), stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        if measured:
            self.usage.watch(name, proc)
        return proc

    def simulator(self, files: list[Path], opts: argparse.Namespace) -> int:
        """A fresh simulator replaying ``files``; the case (the log directory's name) picks its faults."""
        argv = [*manage("simulate_exchange", "--exchange", "binance", "--port", "0", "--speed", "0")]
        # --preload: the files are parsed before anyone connects, so the feed's pace is its sending alone.
        argv += ["--ping-interval", "0", "--preload", "--replay", *map(str, files)]
        if "drops" in self.logs.name:
            argv += ["--drop-every", str(opts.drop_every)]
        if "paced" in self.logs.name:
            argv += ["--max-rate", str(opts.paced_rate)]
        proc = self.start("simulator", argv, measured=False, LOG_LEVEL="INFO")
        return wait_listening(self.logs / "simulator.log", proc)

    def feed_started(self) -> bool:
        """Whether the simulator's feed has started (its log says so once the first client subscribes)."""
        if not self._feed_started:
            log = self.logs / "simulator.log"
            self._feed_started = log.exists() and FEED_STARTED in log.read_text(errors="replace")
        return self._feed_started

    def stop(self) -> None:
        """SIGTERM every process, then kill those still running after 20 s."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# --------------------------------------------------------------------------------------------- workload
def workload(count: int, replay: Path) -> list[TradeRecord]:
    """``count`` real trades: the recording looped with shifted ids and times (as ``simulate_exchange --loop``)."""
    import itertools

    from simulator.feed import looped
    from simulator.replay import read_trades

    return list(itertools.islice(looped(lambda: read_trades(replay)), count))


def write_recording(path: Path, records: list[TradeRecord]) -> Path:
    """``records`` as a recording ``simulate_exchange --replay`` reads (``<recv ns> <@trade frame>`` lines)."""
    from simulator.binance import encode_trade

    with path.open("wb") as out:
        for record in records:
            out.write(b"%d %s\n" % (record.received_at * 1_000_000, encode_trade(record)))
    return path


# --------------------------------------------------------------------------------------------- counting
class TopicCount:
    """Records on ``topic`` (the sum of its partitions' end offsets), read by one consumer kept for the run: a
    consumer built per poll (ten a second) took CPU from the side being measured."""

    def __init__(self, topic: str) -> None:
        from kafka import KafkaConsumer

        from cryptoproject.kafka import client_config

        self.topic = topic
        self.consumer = KafkaConsumer(**client_config())
        self.partitions: list[Any] = []

    def __call__(self) -> int:
        """The records on the topic now (0 until it has partitions)."""
        from kafka import TopicPartition

        if not self.partitions:
            self.partitions = [
                TopicPartition(self.topic, p) for p in self.consumer.partitions_for_topic(self.topic) or ()
            ]
        return sum(self.consumer.end_offsets(self.partitions).values()) if self.partitions else 0

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()


def topic_ids(topic: str, trade_id: Callable[[bytes], int]) -> list[int]:
    """The trade id of every record on ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    from cryptoproject.kafka import client_config

    consumer = KafkaConsumer(**client_config(), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        ids: list[int] = []
        deadline = time.monotonic() + 300
        while any(consumer.position(tp) < end for tp, end in ends.items()) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500, max_records=50_000).values():
                ids.extend(trade_id(m.value) for m in batch)
        return ids
    finally:
        consumer.close()


def sql_one(query: str) -> tuple[Any, ...]:
    """The first row of ``query`` on the benchmark database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query)
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


@dataclass
class Window:
    """What was measured between the start of the simulator's feed and the last change of the count."""

    first_count: int
    seconds: float
    cpu_at_first: float
    cpu_by_pid: dict[int, float] = field(default_factory=dict)


def settle(run: Run, count: Callable[[], int], target: int, idle_s: float, timeout: float) -> Window:
    """Poll ``count`` until it reaches ``target`` or stops changing for ``idle_s`` (what was lost never comes).

    The window opens when the simulator's feed starts, that is when the side has connected and subscribed (the
    feed waits for its first subscriber): start-up (imports, connecting, exchangeInfo) is outside it on both sides,
    and everything from the first trade sent to the last one stored is inside it, whatever a side holds back
    before its first write. (Opening it at the first stored trade instead favoured a side that parses a backlog
    while its database connection opens: cryptofeed's Postgres backend then showed a sixth of its CPU.)"""
    opened: tuple[int, float, float] | None = None
    cpu_by_pid: dict[int, float] = {}
    last, last_change = 0, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.usage.sample()
        run.usage.check_alive(run.logs)
        if opened is None and run.feed_started():
            opened = (count(), time.monotonic(), sum(run.usage.cpu.values()))
            cpu_by_pid = dict(run.usage.cpu)
        now_count, now = count(), time.monotonic()
        if now_count != last:
            last, last_change = now_count, now
        if opened is not None and last and (now_count >= target or now - last_change > idle_s):
            break
        time.sleep(0.1)
    run.usage.sample()
    if opened is None or not last:
        raise RuntimeError(f"nothing was stored within {timeout:.0f} s; see {run.logs}")
    return Window(opened[0], max(last_change - opened[1], 1e-3), opened[2], cpu_by_pid)


def side(run: Run, offered: int, ids: list[int], expected: set[int], window: Window) -> Side:
    """The figures of one side from the stored trade ids and the measured window."""
    distinct = set(ids)
    cpu = sum(run.usage.cpu.values())
    stored = len(ids)
    counted = len(distinct) - window.first_count
    # Too little stored after the first sighting to time anything (a side that kept almost nothing): no rate.
    measurable = counted >= max(offered // 100, 1)
    seconds = window.seconds
    by_process: dict[str, float] = {}
    for pid, used in run.usage.cpu.items():
        name = run.usage.names.get(pid, str(pid))
        by_process[name] = by_process.get(name, 0.0) + used - window.cpu_by_pid.get(pid, 0.0)
    by_process = {k: round(v / max(counted, 1) * 1e6, 1) for k, v in by_process.items()}
    return Side(
        trades_per_s=round(counted / seconds, 1) if measurable else None,
        cpu_us_per_trade=round((cpu - window.cpu_at_first) / counted * 1e6, 1) if measurable else None,
        peak_rss_mb=round(sum(v for k, v in run.usage.rss.items()), 1),
        completeness=round(len(distinct & expected) / offered, 5),
        duplicates=stored - len(distinct),
        offered=offered,
        stored=stored,
        distinct=len(distinct),
        seconds=round(seconds, 2),
        cpu_s=round(cpu, 2),
        processes=dict(run.usage.rss),
        cpu_us_per_trade_by_process=by_process if measurable else {},
    )


# --------------------------------------------------------------------------------------------- the sides
def ingest_ours(
    opts: argparse.Namespace, env: dict[str, str], files: list[Path], expected: set[int], logs: Path
) -> Side:
    """simulator -> manage.py ingest -> Kafka."""
    from cryptoproject.kafka import TopicSpec, admin_client, ensure_topics
    from ingest.records import decode

    suffix = uuid.uuid4().hex[:8]
    topic, dlq = f"bench.peer.trades.{suffix}", f"bench.peer.dlq.{suffix}"
    ensure_topics([TopicSpec(topic, 6, {}), TopicSpec(dlq, 1, {})])
    run = Run(dict(env, KAFKA_TRADES_TOPIC=topic, KAFKA_DLQ_TOPIC=dlq), logs)
    try:
        port = run.simulator(files, opts)
        run.start(
            "ingest",
            manage(
                "ingest", "--exchange", "binance", "--symbols", "btcusdt", "--channels", "trades", "--metrics-port", "0"
            ),
            BINANCE_WS_URL=f"ws://127.0.0.1:{port}",
            BINANCE_REST_URL=f"http://127.0.0.1:{port}",
        )
        counter = TopicCount(topic)
        try:
            window = settle(run, counter, len(expected), opts.idle, opts.timeout)
        finally:
            counter.close()
    finally:
        run.stop()
    ids = topic_ids(topic, lambda value: decode(value).trade_id)
    delete_topics(admin_client, [topic, dlq])
    return side(run, len(expected), ids, expected, window)


def ingest_cryptofeed(
    opts: argparse.Namespace, env: dict[str, str], files: list[Path], expected: set[int], logs: Path
) -> Side:
    """simulator -> cryptofeed Binance feed -> its Kafka backend (acks=all, idempotent)."""
    from django.conf import settings

    from cryptoproject.kafka import TopicSpec, admin_client, ensure_topics

    key = f"bench-peer-{uuid.uuid4().hex[:8]}"
    topic = f"{key}-BINANCE-BTC-USDT"
    ensure_topics([TopicSpec(topic, 6, {})])
    run = Run(env, logs)
    try:
        port = run.simulator(files, opts)
        argv = [str(PEER_PYTHON), str(ROOT / "benchmarks" / "peer_cryptofeed.py")]
        argv += ["--ws", f"ws://127.0.0.1:{port}", "--rest", f"http://127.0.0.1:{port}"]
        # The settings' value (the environment's, or the default stack's address when it sets none).
        argv += ["kafka", "--bootstrap", settings.KAFKA_BOOTSTRAP_SERVERS[0], "--key", key]
        run.start("cryptofeed", argv)
        counter = TopicCount(topic)
        try:
            window = settle(run, counter, len(expected), opts.idle, opts.timeout)
        finally:
            counter.close()
    finally:
        run.stop()
    ids = topic_ids(topic, lambda value: int(json.loads(value)["id"]))
    delete_topics(admin_client, [topic])
    return side(run, len(expected), ids, expected, window)


def wait_ready(run: Run, worker: str, timeout: float) -> None:
    """Until ``consume_trades`` has its partitions (a new group's first assignment waits for the broker's initial
    rebalance delay, 3 s by default) and the Celery ``worker`` answers a ping."""
    from cryptoproject.celery import app

    deadline = time.monotonic() + timeout
    log = run.logs / "consume_trades.log"
    assigned = answered = False
    while not (assigned and answered):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the chain was not ready within {timeout:.0f} s; see {run.logs}")
        run.usage.check_alive(run.logs)
        assigned = assigned or (log.exists() and "partitions assigned" in log.read_text(errors="replace"))
        answered = answered or bool(app.control.ping(destination=[worker], timeout=0.5))
        time.sleep(0.2)


def storage_ours(
    opts: argparse.Namespace, env: dict[str, str], files: list[Path], expected: set[int], logs: Path
) -> Side:
    """simulator -> ingest -> Kafka -> consume_trades -> PostgreSQL, with 1m candles from the Celery worker."""
    from benchmarks.pipeline import candle_trade_count, reset_tables
    from cryptoproject.celery import app
    from cryptoproject.kafka import TopicSpec, admin_client, ensure_topics

    suffix = uuid.uuid4().hex[:8]
    topic, dlq, group = f"bench.peer.trades.{suffix}", f"bench.peer.dlq.{suffix}", f"bench-peer-{suffix}"
    ensure_topics([TopicSpec(topic, 6, {}), TopicSpec(dlq, 1, {})])
    reset_tables()
    app.control.purge()
    run = Run(dict(env, KAFKA_TRADES_TOPIC=topic, KAFKA_DLQ_TOPIC=dlq, KAFKA_CONSUMER_GROUP=group), logs)
    try:
        worker = [sys.executable, "-m", "celery", "-A", "cryptoproject", "worker", "-Q", "analytics,alerts,default"]
        worker += ["-c", "2", "-n", f"bench-peer-{suffix}@%h", "--without-gossip", "--without-mingle"]
        run.start("worker", [*worker, "--loglevel", "WARNING"])
        # INFO for its "partitions assigned" line: the chain is running before the market opens, as it is live.
        run.start("consume_trades", manage("consume_trades"), LOG_LEVEL="INFO")
        wait_ready(run, f"bench-peer-{suffix}@{socket.gethostname()}", opts.timeout)
        port = run.simulator(files, opts)
        run.start(
            "ingest",
            manage(
                "ingest", "--exchange", "binance", "--symbols", "btcusdt", "--channels", "trades", "--metrics-port", "0"
            ),
            BINANCE_WS_URL=f"ws://127.0.0.1:{port}",
            BINANCE_REST_URL=f"http://127.0.0.1:{port}",
        )

        def rows_and_candles() -> int:
            # Done when every trade is a row and counted in its 1m candle: both counts reach the offered trades.
            return int(sql_one("SELECT count(*) FROM analytics_trade")[0]) + candle_trade_count()

        window = settle(run, rows_and_candles, 2 * len(expected), opts.idle, opts.timeout)
    finally:
        run.stop()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT trade_id FROM analytics_trade WHERE exchange = 'binance'")
        ids = [int(r[0]) for r in cursor.fetchall()]
    delete_topics(admin_client, [topic, dlq])
    reset_tables()
    return side(run, len(expected), ids, expected, window)


def storage_cryptofeed(
    opts: argparse.Namespace, env: dict[str, str], files: list[Path], expected: set[int], logs: Path
) -> Side:
    """simulator -> cryptofeed Binance feed -> its Postgres backend (asyncpg, one multi-row INSERT per batch)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(CF_SCHEMA)
    db = urlsplit(env["DATABASE_URL"])
    dsn = {
        "host": db.hostname,
        "port": db.port or 5432,
        "user": unquote(db.username or ""),
        "pw": unquote(db.password or ""),
        "db": db.path.lstrip("/"),
    }
    run = Run(env, logs)
    try:
        port = run.simulator(files, opts)
        argv = [str(PEER_PYTHON), str(ROOT / "benchmarks" / "peer_cryptofeed.py")]
        argv += ["--ws", f"ws://127.0.0.1:{port}", "--rest", f"http://127.0.0.1:{port}"]
        argv += ["postgres", "--dsn-json", json.dumps(dsn), "--table", CF_TABLE]
        run.start("cryptofeed", argv)

        def rows() -> int:
            return int(sql_one(f"SELECT count(*) FROM {CF_TABLE}")[0])

        window = settle(run, rows, len(expected), opts.idle, opts.timeout)
    finally:
        run.stop()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT trade_id FROM {CF_TABLE}")
        ids = [int(r[0]) for r in cursor.fetchall()]
        cursor.execute(f"DROP TABLE {CF_TABLE}")
    return side(run, len(expected), ids, expected, window)


# --------------------------------------------------------------------------------------------- ceilings
def _stage(env: dict[str, str], *args: str) -> dict[str, Any]:
    """One ``benchmarks.peer_ceilings`` stage in its own process; its JSON line."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.peer_ceilings", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"peer_ceilings {args[0]} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median CPU per trade, with every run's CPU per trade beside it."""
    ordered = sorted(runs, key=lambda r: r["cpu_us_per_trade"])
    return {**ordered[len(ordered) // 2], "cpu_us_per_trade_runs": [r["cpu_us_per_trade"] for r in runs]}


def ceilings(opts: argparse.Namespace, env: dict[str, str], files: list[Path], logs: Path) -> dict[str, Any]:
    """Each stage of ingest alone on the same trades (receive, parse, publish), ``--ceiling-runs`` times each."""
    from cryptoproject.kafka import TopicSpec, admin_client, ensure_topics

    receive, parse, publish = [], [], []
    for _ in range(opts.ceiling_runs):
        run = Run(env, logs)
        try:
            port = run.simulator(files, opts)
            receive.append(_stage(env, "receive", "--url", f"ws://127.0.0.1:{port}", "--trades", str(opts.trades)))
        finally:
            run.stop()
        parse.append(_stage(env, "parse", "--frames", str(files[0])))
        suffix = uuid.uuid4().hex[:8]
        topic, dlq = f"bench.peer.ceiling.{suffix}", f"bench.peer.ceiling-dlq.{suffix}"
        ensure_topics([TopicSpec(topic, 6, {}), TopicSpec(dlq, 1, {})])
        try:
            publish.append(_stage(env, "publish", "--frames", str(files[0]), "--topic", topic, "--dlq", dlq))
        finally:
            delete_topics(admin_client, [topic, dlq])
    stages = {"receive": _median(receive), "parse": _median(parse), "publish": _median(publish)}
    total = round(sum(s["cpu_us_per_trade"] for s in stages.values()), 2)
    return {
        **stages,
        "sum_cpu_us_per_trade": total,
        # One ingest process runs the three stages under one GIL: it cannot go faster than this.
        "one_process_trades_per_s_bound": round(1e6 / total, 1),
    }


def target_budget(report: dict[str, Any]) -> dict[str, Any]:
    """What the ingest targets ask in absolute terms, from cryptofeed's figures in this run, beside the ceilings."""
    theirs = report["ingest"]["cryptofeed"]
    budget: dict[str, Any] = {
        "ingest_cpu_us_per_trade_max": round(theirs["cpu_us_per_trade"] * report["targets"]["ingest_cpu_ratio_max"], 2),
        "ingest_trades_per_s_min": round(theirs["trades_per_s"] * report["targets"]["ingest_rate_ratio_min"], 1),
    }
    limits = report.get("ceilings")
    if limits:
        budget["stages_alone_cpu_us_per_trade"] = limits["sum_cpu_us_per_trade"]
        budget["one_process_trades_per_s_bound"] = limits["one_process_trades_per_s_bound"]
    return budget


# --------------------------------------------------------------------------------------------- report
def ratios(ours: Side, theirs: Side) -> dict[str, float | None]:
    """ours / cryptofeed for the rate; cryptofeed / ours for CPU and memory (how many times leaner ours is)."""

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    return {
        "trades_per_s_ours_over_cryptofeed": div(ours.trades_per_s, theirs.trades_per_s),
        "cpu_per_trade_ours_over_cryptofeed": div(ours.cpu_us_per_trade, theirs.cpu_us_per_trade),
        "peak_rss_ours_over_cryptofeed": div(ours.peak_rss_mb, theirs.peak_rss_mb),
    }


def pair(ours: Side, theirs: Side) -> dict[str, Any]:
    """One comparison for the report: both sides' figures and their :func:`ratios`."""
    return {"ours": ours.__dict__, "cryptofeed": theirs.__dict__, "ratios": ratios(ours, theirs)}


def peer_version() -> str:
    """The cryptofeed version of the peer virtualenv."""
    out = subprocess.run(
        [str(PEER_PYTHON), "-c", "import importlib.metadata as m; print(m.version('cryptofeed'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    lines = [
        f"workload: {report['workload']['trades']:,} real BTCUSDT trades, simulator --speed 0, "
        f"cryptofeed {report['cryptofeed_version']}",
        f"{'case':<26} {'side':<11} {'trades/s':>10} {'CPU µs/trade':>13} {'peak RSS MB':>12} "
        f"{'complete':>9} {'dups':>6}",
    ]
    for case in [c for c in report if isinstance(report[c], dict) and "ratios" in report[c]]:
        for name in ("ours", "cryptofeed"):
            s = report[case][name]
            rate = "n/a" if s["trades_per_s"] is None else f"{s['trades_per_s']:,.0f}"
            cpu = "n/a" if s["cpu_us_per_trade"] is None else f"{s['cpu_us_per_trade']:,.1f}"
            lines.append(
                f"{case:<26} {name:<11} {rate:>10} {cpu:>13} "
                f"{s['peak_rss_mb']:>12,.0f} {s['completeness']:>9.4f} {s['duplicates']:>6,}"
            )
        r = report[case]["ratios"]
        lines.append(
            f"{'':<26} ratio: rate x{r['trades_per_s_ours_over_cryptofeed']}, "
            f"CPU/trade x{r['cpu_per_trade_ours_over_cryptofeed']}, RSS x{r['peak_rss_ours_over_cryptofeed']}"
        )
    limits = report.get("ceilings")
    if limits:
        lines.append("each ingest stage alone (median CPU µs/trade; rate):")
        for stage in ("receive", "parse", "publish"):
            lines.append(
                f"  {stage:<8} {limits[stage]['cpu_us_per_trade']:>7.2f} µs  {limits[stage]['trades_per_s']:>10,.0f}/s"
            )
        lines.append(
            f"  sum      {limits['sum_cpu_us_per_trade']:>7.2f} µs  one process bound "
            f"{limits['one_process_trades_per_s_bound']:,.0f}/s"
        )
    budget = report.get("ingest_target_budget")
    if budget:
        lines.append(
            f"ingest targets in this run: at most {budget['ingest_cpu_us_per_trade_max']} µs/trade, "
            f"at least {budget['ingest_trades_per_s_min']:,.0f} trades/s"
        )
    lines.append(report["note"])
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``make bench-peer BENCH_ARGS="..."``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=100_000, help="trades offered per run")
    parser.add_argument("--drop-every", type=int, default=5000, help="frames per connection in the drops case")
    parser.add_argument("--overlap", type=float, default=0.2, help="share of trades replayed twice (duplicates)")
    parser.add_argument("--replay", type=Path, default=DEFAULT_REPLAY)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds without progress that end a run")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per run")
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument(
        "--paced-rate", type=float, default=2000.0, help="trades/s offered in the paced duplicates case"
    )
    parser.add_argument(
        "--cases", default="ceilings,ingest,storage,ingest_drops,storage_duplicates,storage_duplicates_paced"
    )
    parser.add_argument("--ceiling-runs", type=int, default=3, help="runs of each stage alone (median reported)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results" / "peer.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every case on both sides, write the JSON and print the table."""
    opts = parse_args(argv)
    if not PEER_PYTHON.exists():
        print(f"{PEER_PYTHON} is missing: make bench-peer creates it from requirements/peer.txt", file=sys.stderr)
        return 2
    env = bench_environment("_peer", opts.redis_db)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    out_dir = opts.output.parent
    work = out_dir / "peer-work"
    work.mkdir(parents=True, exist_ok=True)
    records = workload(opts.trades, opts.replay)
    expected = {r.trade_id for r in records}
    whole = [write_recording(work / "market.frames", records)]
    # Two overlapping halves: the middle ``overlap`` of the market is replayed twice (merged by trade time).
    cut = int(len(records) * (1 + opts.overlap) / 2)
    overlapping = [
        write_recording(work / "first.frames", records[:cut]),
        write_recording(work / "second.frames", records[len(records) - cut :]),
    ]
    logs = out_dir / "logs" / "peer"
    cases = [c.strip() for c in opts.cases.split(",") if c.strip()]
    report: dict[str, Any] = {
        "workload": {
            "trades": opts.trades,
            "replay": str(opts.replay.relative_to(ROOT) if opts.replay.is_relative_to(ROOT) else opts.replay),
            "drop_every": opts.drop_every,
            "overlap": opts.overlap,
            "replayed_twice": 2 * cut - len(records),
        },
        "cryptofeed_version": peer_version(),
    }
    plan: dict[str, tuple[Callable[..., Side], Callable[..., Side], list[Path]]] = {
        "ingest": (ingest_ours, ingest_cryptofeed, whole),
        "storage": (storage_ours, storage_cryptofeed, whole),
        "ingest_drops": (ingest_ours, ingest_cryptofeed, whole),
        "storage_duplicates": (storage_ours, storage_cryptofeed, overlapping),
        "storage_duplicates_paced": (storage_ours, storage_cryptofeed, overlapping),
    }
    for case in cases:
        if case == "ceilings":
            print("ceilings: each ingest stage alone ...", flush=True)
            report["ceilings"] = ceilings(opts, env, whole, logs / "ceilings")
            continue
        ours_fn, theirs_fn, files = plan[case]
        print(f"{case}: ours ...", flush=True)
        ours = ours_fn(opts, env, files, expected, logs / f"{case}-ours")
        print(f"{case}: cryptofeed ...", flush=True)
        theirs = theirs_fn(opts, env, files, expected, logs / f"{case}-cryptofeed")
        report[case] = pair(ours, theirs)
    report["targets"] = {
        "ingest_rate_ratio_min": 20,
        "ingest_cpu_ratio_max": 0.1,
        "storage_rate_ratio_min": 1,
        "ours_lost_and_duplicated": 0,
    }
    if "ingest" in report:
        report["ingest_target_budget"] = target_budget(report)
    report["machine"] = {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()}
    report["note"] = (
        "one run on this machine: both sides share its cores with the simulator, Kafka, PostgreSQL and Redis, and "
        "absolute figures differ about twofold between machines (the load average at the end is under machine); "
        "the ratios were measured in the same run on the same stream"
    )
    report["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
