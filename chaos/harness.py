"""The fault-injection harness: the whole pipeline as real processes on a real stack, one fault per scenario, and a
check of the stored data against the ground truth of :mod:`chaos.truth`.

Per scenario: fresh topics, consumer group and tables; the simulator replays the bundled recordings looped to
``trades`` trades at ``rate`` trades/s; ``ingest``, ``consume_trades``, a Celery worker and beat run under a small
supervisor that restarts whatever exits (as honcho, systemd or Kubernetes would) and counts it. The fault is
injected from a thread once the market has produced ``at`` of the trades. When every trade is stored, every
1-minute candle is complete, every whale alerted and every delivery sent (or a deadline passes), the run is
compared with the truth:

- every trade stored exactly once, with exact decimals, and nothing else;
- every 1-minute candle equal to one recomputed from the files;
- one whale alert per trade at or above the threshold;
- as many dead letters as bad records were injected (malformed frames the simulator sent plus hostile records);
- every alert of the chaos user's rules (created through the API before the pipeline starts) as the truth computes
  it over the order the trades were stored in, each with one outbox row per channel, sent by the worker's outbox
  sender (queue ``notify``, kicked by each firing and by beat), and one in-app notification per in-app row.

This module talks to PostgreSQL, Kafka and Redis with their plain clients and never imports the project's apps
(only :mod:`benchmarks.harness`, the process helpers it shares with the benchmarks; the rules are posted by
:mod:`chaos.account` in a ``manage.py`` subprocess, as a user): it is the outside observer.
Used by ``python -m chaos`` (``make chaos``) and, with small figures, by ``tests/reliability/test_chaos.py`` in
``make test``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import redis
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.partitioner.default import murmur2
from kafka.structs import TopicPartition

from benchmarks import harness
from benchmarks.harness import ROOT, free_port, manage, peak_rss_mb, process_tree
from chaos import truth
from chaos.hostile import hostile_records

RECORDINGS = [ROOT / "data/binance-spot-ws/btcusdt_20240808.gz", ROOT / "data/binance-spot-ws/btcusdt_20240809.gz"]
SYMBOL = "BTCUSDT"
EXCHANGE = "binance"
PARTITIONS = 6
WHALE_THRESHOLD = Decimal("100000")
MINUTE_MS = 60_000


# --------------------------------------------------------------------------------------------- options, results
@dataclass
class Options:
    """The size of the workload and of the faults (``make chaos`` defaults; the CI tests shrink them)."""

    trades: int = 200_000
    rate: float = 4000.0
    kafka_outage_s: float = 120.0
    # kafka-down-long: the broker away this long while the market goes on at ``rate`` (ingest spills to its journal)
    kafka_down_long_s: float = 600.0
    postgres_outage_s: float = 60.0
    redis_outage_s: float = 30.0
    rebalance_every_s: float = 20.0
    restart_pause_s: float = 2.0
    drop_every: int = 5000
    gap_every: int = 1000
    # ws-drops: seconds between REST backfill requests, so backfilled gaps are stored after later trades (in later
    # batches), the order the alert rules' truth must follow
    backfill_interval_s: float = 0.25
    malformed_rate: float = 0.01
    hostile: int = 100
    drain_timeout_s: float = 300.0
    logs: Path = ROOT / "artifacts/chaos"
    extra_env: dict[str, str] = field(default_factory=dict)
    # The market: the simulator serves the recordings as this exchange's (relabelled), ingest reads it. ``symbol``
    # is spelled as the exchange's trade records spell it (BTCUSDT, BTC-USDT, BTC/USDT).
    exchange: str = EXCHANGE
    symbol: str = SYMBOL
    # How to ask the simulator's REST for the market's latest trade: the path (``{symbol}`` URL-quoted) and how to
    # read the trade id from the JSON answer (None: no trade yet). The default is Binance's ``/api/v3/trades``.
    latest_trade: tuple[str, Callable[[Any], int | None]] = (
        "/api/v3/trades?symbol={symbol}&limit=1",
        lambda rows: int(rows[-1]["id"]) if rows else None,
    )
    extra_simulator_args: list[str] = field(default_factory=list)
    # For an exchange whose REST serves only its newest trades (Bybit), a reconnect can lose trades no request
    # reaches, and ingest logs their time window as possibly lost. True: the expected trades missing from the
    # database that lie in such a reported window are accounted for (``Row.lost_reported``) and the checks run
    # over the others; a missing trade outside every reported window still counts as missing.
    account_reported_losses: bool = False


@dataclass
class Row:
    """One scenario's outcome: the line of the ``make chaos`` table."""

    scenario: str
    expected: int
    stored: int = 0
    missing: int = 0
    duplicated: int = 0
    unexpected: int = 0
    wrong_values: int = 0
    candles_expected: int = 0
    candles_wrong: int = 0
    whales_expected: int = 0
    whales: int = 0
    whales_wrong: int = 0
    dead_letters_expected: int = 0
    dead_letters: int = 0
    alert_rules: int = 0
    alerts_expected: int = 0
    alerts: int = 0
    alerts_missing: int = 0
    alerts_duplicated: int = 0
    alerts_unexpected: int = 0
    alerts_wrong: int = 0
    suppressed_expected: int = 0
    suppressed: int = 0
    deliveries_wrong: int = 0
    deliveries_unsent: int = 0
    notifications_wrong: int = 0
    stored_late: int = 0
    # account_reported_losses only: the windows ingest reported as possibly lost, and the expected trades missing
    # from the database inside them (left out of ``expected`` and of every check)
    lost_windows: int = 0
    lost_reported: int = 0
    recover_s: float | None = None
    restarts: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    completed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No trade lost or duplicated, nothing unexpected, every candle, alert, rule firing (its one delivery per
        channel, sent, and its in-app notification once) and dead letter as expected."""
        return (
            self.completed
            and self.stored == self.expected
            and not (self.missing or self.duplicated or self.unexpected or self.wrong_values or self.candles_wrong)
            and self.whales == self.whales_expected
            and not self.whales_wrong
            and self.dead_letters == self.dead_letters_expected
            and self.alert_rules > 0
            and self.alerts == self.alerts_expected
            and not (self.alerts_missing or self.alerts_duplicated or self.alerts_unexpected or self.alerts_wrong)
            and self.suppressed == self.suppressed_expected
            and not (self.deliveries_wrong or self.deliveries_unsent or self.notifications_wrong)
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the verdict."""
        return {**asdict(self), "ok": self.ok}


# --------------------------------------------------------------------------------------------- the stack
class Stack:
    """One local stack (``scripts/stack.sh`` with this environment): servers stopped, killed and started."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *args: str) -> None:
        """``scripts/stack.sh ARGS`` (raises with its output when it fails)."""
        done = subprocess.run(
            ["bash", str(ROOT / "scripts/stack.sh"), *args], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"stack.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    @property
    def bootstrap(self) -> str:
        """Every broker of the stack, so clients survive the loss of any one."""
        port = int(self.env.get("STACK_KAFKA_PORT", "9092"))
        brokers = int(self.env.get("STACK_KAFKA_BROKERS", "1"))
        return ",".join(f"127.0.0.1:{port + 2 * i}" for i in range(brokers))

    @property
    def database_url(self) -> str:
        """The stack's server, database ``crypto_chaos``."""
        port = self.env.get("STACK_PG_PORT", "15432")
        return f"postgres://crypto:crypto@127.0.0.1:{port}/crypto_chaos"

    @property
    def redis_url(self) -> str:
        """The stack's Redis, database 0."""
        return f"redis://127.0.0.1:{self.env.get('STACK_REDIS_PORT', '16379')}/0"


def stack_environment(number: int, brokers: int = 1, tls: bool = False) -> dict[str, str]:
    """The environment of local stack ``number`` (``scripts/stack_env.sh``, ``--tls`` with ``tls``), with ``brokers``
    Kafka nodes."""
    argv = ["bash", str(ROOT / "scripts/stack_env.sh"), str(number), *(["--tls"] if tls else [])]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        if line.startswith("unset "):  # a plain stack: no TLS client settings left over from the caller's shell
            for name in line.split()[1:]:
                env.pop(name, None)
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    env["STACK_KAFKA_LIBS"] = os.environ.get("STACK_KAFKA_LIBS", str(ROOT / ".stack/kafka/libs"))
    env["STACK_KAFKA_BROKERS"] = str(brokers)
    return env


# --------------------------------------------------------------------------------------------- processes
class Supervisor:
    """Starts the pipeline's processes, restarts any that exit (unless told otherwise), tracks peak memory."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.argv: dict[str, list[str]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {}
        self.peak: dict[str, float] = {}
        self.held: set[str] = set()  # names a fault stopped on purpose: not restarted until released
        self.lock = threading.RLock()

    def start(self, name: str, argv: list[str]) -> None:
        """Start ``name`` (again)."""
        with self.lock:
            self.argv[name] = argv
            log = (self.logs / f"{name}.log").open("ab")
            self.procs[name] = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def signal(self, name: str, sig: int, hold: bool = False) -> None:
        """Send ``sig`` to ``name`` and its children (SIGKILL of Celery kills its pool too)."""
        with self.lock:
            proc = self.procs[name]
            self.sample()
            if hold:
                self.held.add(name)
            pids = process_tree(proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def release(self, name: str) -> None:
        """Start a held process again."""
        with self.lock:
            self.held.discard(name)
            proc = self.procs[name]
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.start(name, self.argv[name])

    def stop(self, name: str, timeout: float = 30.0) -> int | None:
        """SIGTERM ``name`` and wait (SIGKILL after ``timeout``); it is not restarted."""
        with self.lock:
            self.held.add(name)
            proc = self.procs[name]
        self.sample()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def watch(self) -> None:
        """Restart every process that exited without being held (a supervisor's job), and sample memory."""
        with self.lock:
            self.sample()
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None and name not in self.held:
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    with (self.logs / f"{name}.log").open("ab") as log:
                        log.write(f"\n[chaos] exited with {proc.returncode}: restarted\n".encode())
                    self.start(name, self.argv[name])

    def sample(self) -> None:
        """Peak resident memory per process name (the largest process of its tree, over all its lives)."""
        with self.lock:
            for name, proc in self.procs.items():
                if proc.poll() is None:
                    rss = max((peak_rss_mb(pid) for pid in process_tree(proc.pid)), default=0.0)
                    role = name.rstrip("-0123456789") or name
                    self.peak[role] = round(max(self.peak.get(role, 0.0), rss), 1)

    def stop_all(self) -> None:
        """Stop everything (SIGTERM, then SIGKILL)."""
        for name in list(self.procs):
            self.stop(name)


# --------------------------------------------------------------------------------------------- one run
class Run:
    """The state of one scenario's run, shared by the main loop and the fault thread."""

    def __init__(self, scenario: Scenario, opts: Options, stack: Stack) -> None:
        self.scenario = scenario
        self.opts = opts
        self.stack = stack
        tag = uuid.uuid4().hex[:8]
        self.topic, self.dlq, self.group = f"chaos.trades.{tag}", f"chaos.dlq.{tag}", f"chaos-{tag}"
        self.port = free_port()
        self.logs = opts.logs / scenario.name
        self.logs.mkdir(parents=True, exist_ok=True)
        # Ingest's spill journal, fresh per run: one a failed run left must not be replayed into this run's topics.
        self.journal = self.logs / "journal"
        shutil.rmtree(self.journal, ignore_errors=True)
        self.env = dict(
            stack.env,
            **{
                "DATABASE_URL": stack.database_url,
                "REDIS_URL": stack.redis_url,
                "CELERY_BROKER_URL": stack.redis_url,
                "CELERY_RESULT_BACKEND": stack.redis_url,
                "CHANNEL_LAYER_URL": stack.redis_url,
                "CACHE_URL": stack.redis_url,
                "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
                "KAFKA_TRADES_TOPIC": self.topic,
                "KAFKA_DLQ_TOPIC": self.dlq,
                "KAFKA_CONSUMER_GROUP": self.group,
                f"{opts.exchange.upper()}_WS_URL": f"ws://127.0.0.1:{self.port}",
                f"{opts.exchange.upper()}_REST_URL": f"http://127.0.0.1:{self.port}",
                # Production-like settings: no debug, a real secret.
                "DJANGO_DEBUG": "false",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
                "WHALE_THRESHOLD_USD": str(WHALE_THRESHOLD),
                "LOG_LEVEL": "INFO",
                # The replayed recordings are from 2024: the default retention (30 days) would delete every trade
                # when beat first runs it, which only a long scenario (kafka-down-long) lives to see.
                "TRADE_RETENTION_DAYS": "36500",
                "PYTHONPATH": str(ROOT),
                "DJANGO_SETTINGS_MODULE": "cryptoproject.settings",
                "INGEST_JOURNAL_DIR": str(self.journal),
                **opts.extra_env,
                **scenario.env(opts),
            },
        )
        self.supervisor = Supervisor(self.env, self.logs)
        self.fault_start: float | None = None
        self.fault_end: float | None = None
        self.fault_error: BaseException | None = None
        self.produced_at_fault_end: int | None = None
        self.hostile_sent = 0
        self.notes: list[str] = []

    # -- observations ------------------------------------------------------------------------------------------
    def produced(self) -> int:
        """Trades the market produced so far (the latest id on the simulator's REST, minus the first)."""
        path, latest_id = self.opts.latest_trade
        url = f"http://127.0.0.1:{self.port}" + path.format(symbol=quote(self.opts.symbol, safe=""))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # our own simulator, on loopback
                latest = latest_id(json.loads(response.read()))
        except (OSError, ValueError, LookupError, TypeError):
            return -1
        if latest is None:
            return 0
        return latest - FIRST_ID + 1

    def stored(self) -> tuple[int, int, int, int]:
        """(trades stored, trades covered by 1m candles, whale alerts, alerts of the chaos user's whale rules) for
        the workload's symbol, or -1s."""
        try:
            with psycopg.connect(self.stack.database_url, connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM analytics_trade WHERE exchange = %(e)s AND symbol = %(s)s),"
                    " (SELECT coalesce(sum(trade_count), 0) FROM analytics_candle"
                    "   WHERE exchange = %(e)s AND symbol = %(s)s AND interval = '1m'),"
                    " (SELECT count(*) FROM analytics_whalealert WHERE exchange = %(e)s AND symbol = %(s)s),"
                    " (SELECT count(*) FROM alerts_alert WHERE kind = 'whale')",
                    {"e": self.opts.exchange, "s": self.opts.symbol},
                ).fetchone()
        except psycopg.Error:
            return -1, -1, -1, -1
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def stored_ids(self) -> set[int] | None:
        """The trade ids stored for the workload's symbol, or None when PostgreSQL does not answer."""
        try:
            with psycopg.connect(self.stack.database_url, connect_timeout=2) as conn:
                rows = conn.execute(
                    "SELECT trade_id FROM analytics_trade WHERE exchange = %s AND symbol = %s",
                    (self.opts.exchange, self.opts.symbol),
                ).fetchall()
        except psycopg.Error:
            return None
        return {int(r[0]) for r in rows}

    def unsent(self) -> int:
        """Outbox rows still waiting for a sender (``pending`` or ``sending``), or -1 when PostgreSQL does not
        answer."""
        try:
            with psycopg.connect(self.stack.database_url, connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM notifications_delivery WHERE status IN ('pending', 'sending')"
                ).fetchone()
        except psycopg.Error:
            return -1
        assert row is not None
        return int(row[0])

    def dead_letters(self) -> int:
        """Records on the dead-letter topic (its end offsets), or -1 when Kafka does not answer."""
        from kafka import KafkaConsumer

        try:
            consumer = KafkaConsumer(bootstrap_servers=self.stack.bootstrap.split(","), request_timeout_ms=5000)
        except Exception:  # noqa: BLE001 - Kafka may be the fault
            return -1
        try:
            ends = consumer.end_offsets([TopicPartition(self.dlq, 0)])
            return int(sum(ends.values()))
        except Exception:  # noqa: BLE001
            return -1
        finally:
            consumer.close()

    # -- processes ---------------------------------------------------------------------------------------------
    def start_pipeline(self) -> None:
        """Simulator first (its port), then the worker, the consumer and ingest."""
        sc, o = self.scenario, self.opts
        sim = [
            *manage("simulate_exchange", "--exchange", o.exchange, "--port", str(self.port)),
            *["--replay", *map(str, RECORDINGS), "--loop", "--max-trades", str(o.trades)],
            *["--speed", "0", "--max-rate", str(o.rate), "--seed", "7"],
            *sc.simulator_args(o),
            *o.extra_simulator_args,
        ]
        self.supervisor.start("simulator", sim)
        deadline = time.monotonic() + 60
        while self.produced() < 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not answer on port {self.port}")
            time.sleep(0.2)
        self.supervisor.start("worker", self.worker_argv("worker"))
        # Beat, as deployed: the outbox sender every 5 s (retries, expired leases of a killed sender, a firing
        # whose kick was lost while Redis was down), beside the kick each firing's commit sends.
        self.supervisor.start(
            "beat",
            [
                *[sys.executable, "-m", "celery", "-A", "cryptoproject", "beat", "-l", "INFO"],
                *["--schedule", str(self.logs / "celerybeat-schedule")],
            ],
        )
        self.supervisor.start("consume_trades-1", manage("consume_trades"))
        self.supervisor.start(
            "ingest",
            manage(
                "ingest", "--exchange", o.exchange, "--symbols", o.symbol, "--channels", "trades", "--metrics-port", "0"
            ),
        )

    def worker_argv(self, name: str) -> list[str]:
        """A Celery worker on the pipeline's queues, the alert deliveries' (``notify``: the outbox sender) included."""
        return [
            *[sys.executable, "-m", "celery", "-A", "cryptoproject", "worker", "-Q", "analytics,alerts,default,notify"],
            *["-c", "2", "-n", f"{name}-{self.group}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
        ]

    def end_fault(self) -> None:
        """Mark the fault over (the time to recover is measured from here)."""
        self.fault_end = time.monotonic()
        self.produced_at_fault_end = self.produced()


@dataclass(frozen=True)
class Scenario:
    """A fault and when it strikes (the fraction ``at`` of the market produced)."""

    name: str
    description: str
    fault: Callable[[Run], None] | None = None
    at: float = 0.4
    simulator_args: Callable[[Options], list[str]] = lambda _o: []
    env: Callable[[Options], dict[str, str]] = lambda _o: {}
    brokers: int = 1
    hostile: bool = False
    # the scenario's own workload (a longer market, say), from the suite's options
    options: Callable[[Options], Options] | None = None

    def sized(self, opts: Options) -> Options:
        """The options this scenario runs with."""
        return opts if self.options is None else self.options(opts)


FIRST_ID = 3735683259  # the first trade id of btcusdt_20240808.gz


def setup_database(stack: Stack) -> None:
    """Create ``crypto_chaos`` when missing and migrate it."""
    parts = urlsplit(stack.database_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'crypto_chaos'").fetchone():
            conn.execute("CREATE DATABASE crypto_chaos")
    env = dict(stack.env, DATABASE_URL=stack.database_url, DJANGO_DEBUG="true", PYTHONPATH=str(ROOT))
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), cwd=ROOT, env=env, check=True)


def reset(stack: Stack) -> None:
    """Empty the project's tables and the Redis database (Celery queues, coalescing keys)."""
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND (tablename LIKE 'analytics\\_%' OR tablename LIKE 'alerts\\_%'"
                " OR tablename LIKE 'notifications\\_%')"
            )
        ]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
    redis.Redis.from_url(stack.redis_url).flushdb()


def create_topics(run: Run) -> None:
    """The run's trades and dead-letter topics, replicated over every broker of the stack (waiting until all of
    them are registered: a broker restarted by an earlier scenario may still be rejoining)."""
    brokers = run.scenario.brokers
    admin = KafkaAdminClient(bootstrap_servers=run.stack.bootstrap.split(","), request_timeout_ms=20000)
    try:
        deadline = time.monotonic() + 120
        while len(admin.describe_cluster().get("brokers") or []) < brokers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {brokers} brokers registered after 120 s")
            time.sleep(0.5)
        admin.create_topics([NewTopic(run.topic, PARTITIONS, brokers), NewTopic(run.dlq, 1, brokers)], timeout_ms=20000)
    finally:
        admin.close()


def delete_topics(run: Run) -> None:
    """Drop the run's topics (best effort: the names are unique anyway)."""
    harness.delete_topics(
        lambda: KafkaAdminClient(bootstrap_servers=run.stack.bootstrap.split(","), request_timeout_ms=10000),
        [run.topic, run.dlq],
    )


def trade_partition(exchange: str = EXCHANGE, symbol: str = SYMBOL) -> int:
    """The partition of ``binance:BTCUSDT`` (Kafka's default partitioner)."""
    return (murmur2(f"{exchange}:{symbol}".encode()) & 0x7FFFFFFF) % PARTITIONS


def send_hostile(run: Run) -> None:
    """Produce the hostile records onto the trades topic, half on the workload's partition."""
    producer = KafkaProducer(bootstrap_servers=run.stack.bootstrap.split(","), acks="all", max_request_size=1 << 20)
    try:
        for i, value in enumerate(hostile_records(run.opts.hostile, seed=3)):
            key = f"{run.opts.exchange}:{run.opts.symbol}".encode() if i % 2 == 0 else f"hostile:{i}".encode()
            producer.send(run.topic, key=key, value=value)
        producer.flush(60)
    finally:
        producer.close(10)
    run.hostile_sent = run.opts.hostile


# --------------------------------------------------------------------------------------------- alert rules
CHAOS_USER = "chaos"


def alert_rules(expected: list[truth.Trade], exchange: str = EXCHANGE, symbol: str = SYMBOL) -> list[dict[str, Any]]:
    """The chaos user's rules (``POST /api/v1/alert-rules`` bodies), all delivered in-app: ``price_cross`` at five
    quantiles of the workload's prices (traded prices, so ties with the level happen; up, down and both), the median
    again under a 30 s cooldown, ``pct_move`` up, down and both over 5 s to 120 s, a ``whale`` rule at about the
    99th percentile of the notionals (a traded notional exactly) and one with the default threshold on every
    market, and ``volume_spike`` on 1-minute candles (1.2 x the candle before, 0.5 x the mean of the two before)."""
    prices = sorted(t.price for t in expected)
    notionals = sorted(t.price * t.quantity for t in expected)
    n = len(prices)

    def rule(kind: str, params: dict[str, str | int], cooldown_s: int = 0, market: bool = True) -> dict[str, Any]:
        where = {"exchange": exchange, "symbol": symbol} if market else {"exchange": "", "symbol": ""}
        return {"kind": kind, **where, "params": params, "channels": ["in_app"], "cooldown_s": cooldown_s}

    def plain(value: Decimal) -> str:
        return f"{value.normalize():f}"

    rules = [
        rule("price_cross", {"level": plain(prices[n * k // 6]), "direction": direction})
        for k, direction in zip(range(1, 6), ("up", "down", "both", "up", "down"), strict=True)
    ]
    rules.append(rule("price_cross", {"level": plain(prices[n // 2]), "direction": "both"}, cooldown_s=30))
    rules += [
        rule("pct_move", {"pct": "0.03", "window_s": 5, "direction": "both"}),
        rule("pct_move", {"pct": "0.05", "window_s": 10, "direction": "up"}),
        rule("pct_move", {"pct": "0.1", "window_s": 120, "direction": "down"}),
        rule("whale", {"min_notional": plain(notionals[max(0, n - 1 - n // 100)])}),
        rule("whale", {}, market=False),
        rule("volume_spike", {"interval": "1m", "factor": "1.2", "n": 1}),
        rule("volume_spike", {"interval": "1m", "factor": "0.5", "n": 2}),
    ]
    return rules


def create_rules(run: Run, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create the chaos user and post ``rules`` through the API (:mod:`chaos.account`, in a subprocess: the
    harness never imports the project); returns the rules with their ``id``."""
    env = dict(run.env, CHAOS_RULES=json.dumps(rules), CHAOS_USER=CHAOS_USER)
    done = subprocess.run(
        manage("shell", "-c", "from chaos.account import main; main()"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode:
        raise RuntimeError(f"creating the alert rules failed:\n{done.stdout}\n{done.stderr}")
    created = json.loads(done.stdout.strip().splitlines()[-1])
    return [{**body, "id": int(answer["id"])} for body, answer in zip(rules, created, strict=True)]


def store_batches(conn: psycopg.Connection[Any], exchange: str = EXCHANGE, symbol: str = SYMBOL) -> list[list[int]]:
    """The workload's trade ids per store transaction, in the order stored.

    A rule sees the trades in that order (docs/ALERTS.md): normally trade-id order, but a backfilled gap is stored
    after later trades. Each batch is one transaction of the consumer: its rows share ``xmin``, and the trade
    table's ``id`` sequence orders the transactions of one market (a market is stored by one consumer at a time).
    Only the grouping and the order are read here; what a rule should do with them is :mod:`chaos.truth`'s.
    """
    rows = conn.execute(
        "SELECT xmin::text::bigint, id, trade_id FROM analytics_trade WHERE exchange = %s AND symbol = %s",
        (exchange, symbol),
    ).fetchall()
    batches: dict[int, tuple[int, list[int]]] = {}
    for tx, row_id, trade_id in rows:
        first, ids = batches.setdefault(tx, (row_id, []))
        ids.append(trade_id)
        if row_id < first:
            batches[tx] = (row_id, ids)
    return [ids for _, ids in sorted(batches.values())]


def compare_alerts(run: Run, expected: list[truth.Trade], rules: list[dict[str, Any]], row: Row) -> None:
    """Fill ``row``'s alert figures: the chaos user's alerts against :mod:`chaos.truth`, and their deliveries
    against the stored alerts: one outbox row per channel, ``sent``, and one in-app notification per in-app row."""
    want_trades = {t.trade_id: t for t in expected}
    with psycopg.connect(run.stack.database_url) as conn:
        batches = store_batches(conn, run.opts.exchange, run.opts.symbol)
        alerts = conn.execute(
            "SELECT id, rule_id, kind, trigger, trade_id, price, (extract(epoch FROM traded_at) * 1000)::bigint,"
            " details->>'what', details->>'reference' FROM alerts_alert"
        ).fetchall()
        deliveries = conn.execute("SELECT key, status, kind FROM notifications_delivery").fetchall()
        notifications = conn.execute("SELECT key FROM notifications_notification").fetchall()
        states = conn.execute("SELECT id, suppressed, state->>'since' FROM alerts_alertrule").fetchall()
    suppressed = {int(i): int(n) for i, n, _ in states}
    # Observed, as the store order is: the newest candle closed when a candle rule started (its first update).
    since = {int(i): None if s is None else int(s) for i, _, s in states}
    seen_ids = [i for i in truth.seen_order(batches) if i in want_trades]
    highest = 0
    late_minutes: set[int] = set()
    for i in seen_ids:
        if i < highest:
            row.stored_late += 1
            late_minutes.add(want_trades[i].time_ms - want_trades[i].time_ms % MINUTE_MS)
        highest = max(highest, i)
    seen = [want_trades[i] for i in seen_ids]
    times = {t.trade_id: t.time_ms for t in expected}
    bars = truth.minute_bars(expected)
    # (rule id, trigger) -> (kind, trade id, price, time ms, what, reference)
    want: dict[tuple[int, str], tuple[str, int | None, Decimal, int, str, Decimal | None]] = {}
    skipped: set[tuple[int, str]] = set()
    for r in rules:
        p = r["params"]
        fires: dict[int, Any]
        if r["kind"] == "volume_spike":
            n = int(p["n"])
            for open_ms in truth.volume_spike_fires(bars, MINUTE_MS, Decimal(p["factor"]), n, since[r["id"]]):
                key = (r["id"], f"candle:1m:{open_ms}")
                want[key] = ("volume_spike", None, bars[open_ms].close, open_ms + MINUTE_MS, "spike", None)
            # A trade stored late changed a candle after it was evaluated (documented: not evaluated again), so
            # the candles it is part of, or in the window of, are not compared.
            skipped |= {(r["id"], f"candle:1m:{m + k * MINUTE_MS}") for m in late_minutes for k in range(n + 1)}
            continue
        if r["kind"] == "price_cross":
            fires = {
                i: (what, None)
                for i, what in truth.price_cross_fires(seen, Decimal(p["level"]), p["direction"]).items()
            }
        elif r["kind"] == "pct_move":
            fires = truth.pct_move_fires(seen, Decimal(p["pct"]), int(p["window_s"]), p["direction"])
        else:
            threshold = Decimal(p.get("min_notional", WHALE_THRESHOLD))
            fires = dict.fromkeys(truth.whale_ids(seen, threshold), ("", None))
        fires, dropped = truth.cooldown(fires, times, seen_ids, int(r["cooldown_s"]))
        row.suppressed_expected += dropped
        row.suppressed += int(suppressed.get(r["id"], 0))
        for i, (what, reference) in fires.items():
            t = want_trades[i]
            want[(r["id"], f"trade:{i}")] = (r["kind"], t.trade_id, t.price, t.time_ms, what, reference)
    for key in skipped:
        want.pop(key, None)
    got: dict[tuple[int, str], int] = {}
    channels = {int(r["id"]): len(r["channels"]) for r in rules}
    per_alert: dict[int, int] = {int(a[0]): 0 for a in alerts}
    in_app_keys: list[str] = []
    for key, status, kind in deliveries:
        parts = key.split(":")
        alert_id = int(parts[1]) if len(parts) == 3 and parts[0] == "alert" else -1
        if alert_id in per_alert:
            per_alert[alert_id] += 1
        else:
            row.deliveries_wrong += 1  # an outbox row of no alert
        row.deliveries_unsent += status != "sent"
        if kind == "in_app":
            in_app_keys.append(key)
    # One delivery per channel of the alert's rule (each channel of the chaos user has one destination).
    row.deliveries_wrong += sum(1 for a in alerts if per_alert[int(a[0])] != channels.get(int(a[1]), 1))
    # Sent exactly once in the page: one notification per in-app delivery, keyed by it, and no other (a dead
    # delivery's notice, "dead:<key>", is another).
    listed: dict[str, int] = {}
    for (key,) in notifications:
        listed[key] = listed.get(key, 0) + 1
    row.notifications_wrong = sum(1 for key in in_app_keys if listed.get(key) != 1)
    delivered = set(in_app_keys)
    row.notifications_wrong += sum(n for key, n in listed.items() if key not in delivered)
    wrong = 0
    compared = [a for a in alerts if (a[1], a[3]) not in skipped]
    if len(compared) < len(alerts) or any(k[1].startswith("candle:") for k in skipped):
        run.notes.append(f"{len(alerts) - len(compared)} candle alert(s) on candles with late trades not compared")
    alerts = compared
    for _alert, rule_id, kind, trigger, trade_id, price, ms, what, reference in alerts:
        got[(rule_id, trigger)] = got.get((rule_id, trigger), 0) + 1
        w = want.get((rule_id, trigger))
        if w is None:
            continue
        w_kind, w_trade_id, w_price, w_ms, w_what, w_reference = w
        same = (kind, trade_id, price, ms) == (w_kind, w_trade_id, w_price, w_ms)
        same &= kind == "whale" or what == w_what
        # pct_move: the reference the move was measured from (the window's lowest or highest price)
        same &= w_reference is None or (reference is not None and Decimal(reference) == w_reference)
        wrong += not same
    row.alerts_expected = len(want)
    row.alerts = len(alerts)
    row.alerts_duplicated = sum(n - 1 for n in got.values())
    row.alerts_missing = sum(1 for k in want if k not in got)
    row.alerts_unexpected = sum(1 for k in got if k not in want)
    row.alerts_wrong = wrong


# --------------------------------------------------------------------------------------------- the check
def compare(run: Run, expected: list[truth.Trade], row: Row) -> None:
    """Fill ``row`` from the database against the truth."""
    want = {t.trade_id: t for t in expected}
    market = (run.opts.exchange, run.opts.symbol)
    with psycopg.connect(run.stack.database_url) as conn:
        rows = conn.execute(
            "SELECT trade_id, price, quantity, is_buyer_maker, (extract(epoch FROM traded_at) * 1000)::bigint"
            " FROM analytics_trade WHERE exchange = %s AND symbol = %s",
            market,
        ).fetchall()
        others = conn.execute(
            "SELECT count(*) FROM analytics_trade WHERE NOT (exchange = %s AND symbol = %s)", market
        ).fetchone()
        candles = conn.execute(
            "SELECT (extract(epoch FROM open_time) * 1000)::bigint, open, high, low, close, volume, trade_count"
            " FROM analytics_candle WHERE exchange = %s AND symbol = %s AND interval = '1m'",
            market,
        ).fetchall()
        whales = conn.execute(
            "SELECT trade_id FROM analytics_whalealert WHERE exchange = %s AND symbol = %s", market
        ).fetchall()
    seen: dict[int, int] = {}
    wrong = 0
    for trade_id, price, quantity, maker, ms in rows:
        seen[trade_id] = seen.get(trade_id, 0) + 1
        t = want.get(trade_id)
        if t is not None and (t.price, t.quantity, t.is_buyer_maker, t.time_ms) != (price, quantity, maker, ms):
            wrong += 1
    row.stored = len(rows)
    row.duplicated = sum(n - 1 for n in seen.values())
    row.missing = sum(1 for i in want if i not in seen)
    row.unexpected = sum(1 for i in seen if i not in want) + int(others[0] if others else 0)
    row.wrong_values = wrong
    bars = truth.minute_bars(expected)
    got = {ms: truth.Bar(o, h, lo, c, v, n) for ms, o, h, lo, c, v, n in candles}
    row.candles_expected = len(bars)
    row.candles_wrong = sum(1 for ms, bar in bars.items() if got.get(ms) != bar) + sum(
        1 for ms in got if ms not in bars
    )
    whale_want = truth.whale_ids(expected, WHALE_THRESHOLD)
    whale_got = [w[0] for w in whales]
    row.whales_expected = len(whale_want)
    row.whales = len(whale_got)
    row.whales_wrong = len(set(whale_got) ^ whale_want) + (len(whale_got) - len(set(whale_got)))


LOSS_WINDOW_MESSAGE = "trades between these times may be lost"


def reported_loss_windows(log: Path, symbol: str) -> list[tuple[int | None, int]]:
    """The windows of trade times (ms, inclusive; ``None``: from the start) that ingest's log reports as possibly
    lost for ``symbol``, across every life of the process."""
    if not log.exists():
        return []
    windows: list[tuple[int | None, int]] = []
    for line in log.read_text(errors="replace").splitlines():
        if LOSS_WINDOW_MESSAGE not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if str(entry.get("message", "")).startswith(LOSS_WINDOW_MESSAGE) and entry.get("symbol") == symbol:
            after = entry.get("after_time")
            windows.append((None if after is None else int(after), int(entry["before_time"])))
    return windows


def accounted_trades(
    expected: list[truth.Trade], stored_ids: set[int], windows: list[tuple[int | None, int]]
) -> list[truth.Trade]:
    """``expected`` without the trades that are missing from ``stored_ids`` and lie in a reported window: what the
    database must hold exactly when losses inside reported windows are accounted for."""

    def reported(t: truth.Trade) -> bool:
        return any((lo is None or lo <= t.time_ms) and t.time_ms <= hi for lo, hi in windows)

    return [t for t in expected if t.trade_id in stored_ids or not reported(t)]


def ingest_memory_notes(log: Path) -> list[str]:
    """What ingest's last metrics line says of its memory bound and spill journal (nothing when it never spilled)."""
    if not log.exists():
        return []
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if '"ingest metrics"' in line or '"ingest stopped"' in line:
            try:
                metrics = json.loads(line)["metrics"]
            except (ValueError, KeyError, TypeError):
                continue
            if not metrics.get("journal_spilled"):
                return []
            mb = 1024 * 1024
            return [
                f"ingest spilled {metrics['journal_spilled']:,} records to its journal (at most "
                f"{metrics.get('journal_bytes_max', 0) / mb:.0f} MB), replayed {metrics.get('journal_replayed', 0):,}; "
                f"memory held at most {metrics.get('buffered_bytes_max', 0) / mb:.1f} MB of records"
            ]
    return []


def long_outage(opts: Options) -> Options:
    """kafka-down-long's workload: the market goes on at ``rate`` through the whole outage and a while after."""
    return dataclasses.replace(
        opts,
        trades=opts.trades + int(opts.rate * opts.kafka_down_long_s * 1.2),
        kafka_outage_s=opts.kafka_down_long_s,  # the overall deadline allows for it
        drain_timeout_s=max(opts.drain_timeout_s, opts.kafka_down_long_s),  # the backlog is stored afterwards
    )


def _malformed_sent(log: Path) -> int | None:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if "malformed frames sent" in line:
            return int(line.split(" malformed frames sent")[0].rsplit(" ", 1)[-1])
    return None


def _whale_firings(expected: list[truth.Trade], rules: list[dict[str, Any]]) -> int:
    """How many alerts the chaos user's whale rules fire over ``expected``."""
    return sum(
        len(truth.whale_ids(expected, Decimal(r["params"].get("min_notional", WHALE_THRESHOLD))))
        for r in rules
        if r["kind"] == "whale"
    )


def run_scenario(scenario: Scenario, opts: Options, stack: Stack, expected: list[truth.Trade]) -> Row:
    """Run one scenario end to end and check it."""
    row = Row(scenario=scenario.name, expected=len(expected))
    reset(stack)
    run = Run(scenario, opts, stack)
    # The rules are saved before the first trade is stored: each sees every trade of the market.
    rules = create_rules(run, alert_rules(expected, opts.exchange, opts.symbol))
    row.alert_rules = len(rules)
    whale_firings_expected = _whale_firings(expected, rules)
    create_topics(run)
    started = time.monotonic()
    fault_thread: threading.Thread | None = None
    samples: list[tuple[float, int]] = []

    def fault() -> None:
        assert scenario.fault is not None
        run.fault_start = time.monotonic()
        try:
            scenario.fault(run)
        except BaseException as exc:  # noqa: BLE001 - reported in the row
            run.fault_error = exc
        if run.fault_end is None:
            run.end_fault()

    try:
        run.start_pipeline()
        target = expected
        whales_expected = len(truth.whale_ids(expected, WHALE_THRESHOLD))
        deadline: float | None = None
        done_before = False
        while True:
            time.sleep(0.5)
            run.supervisor.watch()
            produced = run.produced()
            stored, candle_trades, whales, whale_firings = run.stored()
            now = time.monotonic()
            samples.append((now, stored))
            if fault_thread is None and scenario.fault is not None and produced >= scenario.at * opts.trades:
                fault_thread = threading.Thread(target=fault, name=f"fault-{scenario.name}", daemon=True)
                fault_thread.start()
            if scenario.hostile and not run.hostile_sent and produced >= 0.5 * opts.trades:
                send_hostile(run)
            fault_done = scenario.fault is None or (fault_thread is not None and not fault_thread.is_alive())
            if opts.account_reported_losses and fault_done and produced >= opts.trades:
                ids = run.stored_ids()
                if ids is not None:
                    windows = reported_loss_windows(run.logs / "ingest.log", opts.symbol)
                    target = accounted_trades(expected, ids, windows)
                    whales_expected = len(truth.whale_ids(target, WHALE_THRESHOLD))
                    whale_firings_expected = _whale_firings(target, rules)
            done = bool(
                fault_done
                and stored >= len(target)
                and candle_trades >= len(target)
                and whales >= whales_expected
                and whale_firings >= whale_firings_expected
                and (not scenario.hostile or run.hostile_sent)
                and run.unsent() == 0  # every firing's deliveries sent (or dead) by the worker's sender
            )
            # With accounted losses the target is worked out from what is stored so far: a trade in a reported
            # window may still be on its way, so the condition must hold on two checks in a row.
            if done and (done_before or not opts.account_reported_losses):
                row.completed = True
                break
            done_before = done
            if produced >= opts.trades and fault_done and deadline is None:
                deadline = now + opts.drain_timeout_s
            if deadline is not None and now > deadline:
                row.notes.append(f"not complete {opts.drain_timeout_s:.0f} s after the market ended")
                break
            if now - started > opts.drain_timeout_s * 4 + opts.kafka_outage_s + opts.trades / opts.rate:
                row.notes.append("overall deadline passed")
                break
        # Everything stored: stop the market to learn how many malformed frames it sent, then let the dead
        # letters of those arrive.
        run.supervisor.stop("simulator")
        malformed = _malformed_sent(run.logs / "simulator.log") or 0
        row.dead_letters_expected = malformed + run.hostile_sent
        dl_deadline = time.monotonic() + 60
        while run.dead_letters() < row.dead_letters_expected and time.monotonic() < dl_deadline:
            time.sleep(0.5)
        time.sleep(1.0)  # a dead letter beyond the expected count would show up now
        row.dead_letters = run.dead_letters()
        if run.fault_end is not None and run.produced_at_fault_end is not None:
            reached = run.produced_at_fault_end
            after = [t for t, n in samples if t >= run.fault_end and n >= reached]
            row.recover_s = round(after[0] - run.fault_end, 1) if after else None
        if run.fault_error is not None:
            row.notes.append(f"fault failed: {type(run.fault_error).__name__}: {run.fault_error}")
    finally:
        run.supervisor.stop_all()
        delete_topics(run)
    row.seconds = round(time.monotonic() - started, 1)
    row.restarts = {k: v for k, v in run.supervisor.restarts.items() if v}
    row.peak_rss_mb = dict(run.supervisor.peak)
    row.notes.extend(ingest_memory_notes(run.logs / "ingest.log"))
    if opts.account_reported_losses:
        windows = reported_loss_windows(run.logs / "ingest.log", opts.symbol)
        stored_ids = run.stored_ids()
        assert stored_ids is not None, "PostgreSQL did not answer after the run"
        target = accounted_trades(expected, stored_ids, windows)
        row.expected = len(target)
        row.lost_windows = len(windows)
        row.lost_reported = len(expected) - len(target)
    else:
        target = expected
    compare(run, target, row)
    compare_alerts(run, target, rules, row)
    row.notes.extend(run.notes)
    return row


# --------------------------------------------------------------------------------------------- the faults
def _pause(run: Run, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))


def kill(name: str) -> Callable[[Run], None]:
    """SIGKILL ``name`` mid-run, start it again after a short pause."""

    def fault(run: Run) -> None:
        run.supervisor.signal(name, signal.SIGKILL, hold=True)
        _pause(run, run.opts.restart_pause_s)
        run.supervisor.release(name)
        run.end_fault()

    return fault


def outage(server: str, seconds: Callable[[Options], float]) -> Callable[[Run], None]:
    """Stop one server of the stack for a while, then start it again."""

    def fault(run: Run) -> None:
        run.stack.run("down", server)
        _pause(run, seconds(run.opts))
        run.stack.run("up", server)
        run.end_fault()

    return fault


def kill_partition_leader(run: Run) -> None:
    """SIGKILL the broker leading the workload's partition (the cluster goes on with two of three)."""
    admin = KafkaAdminClient(bootstrap_servers=run.stack.bootstrap.split(","), request_timeout_ms=10000)
    try:
        (topic,) = admin.describe_topics([run.topic])
    finally:
        admin.close()
    wanted = trade_partition(run.opts.exchange, run.opts.symbol)
    leader = next(p["leader_id"] for p in topic["partitions"] if p["partition_index"] == wanted)
    run.notes.append(f"killed broker {leader}, leader of partition {wanted}")
    run.stack.run("kill", f"kafka-{leader}")
    run.end_fault()
    # It stays down until the run ends: the point is the pipeline going on without it.


def rebalance(run: Run) -> None:
    """A second consumer joins, then leaves, every ``rebalance_every_s``, until the market ends."""
    n = 0
    while run.produced() < run.opts.trades:
        n += 1
        name = f"consume_trades-{n + 1}"
        run.supervisor.start(name, manage("consume_trades"))
        _pause(run, run.opts.rebalance_every_s)
        run.supervisor.stop(name)
        _pause(run, run.opts.rebalance_every_s)
    run.notes.append(f"{n} join/leave cycles")
    run.end_fault()


SCENARIOS: list[Scenario] = [
    Scenario("baseline", "no fault (the reference)"),
    Scenario("kill-ingest", "SIGKILL ingest mid-run, restarted", kill("ingest")),
    Scenario("kill-consumer", "SIGKILL consume_trades mid-run, restarted", kill("consume_trades-1")),
    Scenario("kill-worker", "SIGKILL the Celery worker (and its pool) mid-run, restarted", kill("worker")),
    Scenario(
        "kafka-down", "the Kafka broker stopped, started again", outage("kafka", lambda o: o.kafka_outage_s), at=0.3
    ),
    Scenario(
        "kafka-down-long",
        "the Kafka broker stopped for KAFKA_DOWN_LONG_S while the market goes on (ingest spills to its journal)",
        outage("kafka", lambda o: o.kafka_down_long_s),
        at=0.05,
        options=long_outage,
    ),
    Scenario("postgres-down", "PostgreSQL stopped, started again", outage("postgres", lambda o: o.postgres_outage_s)),
    Scenario("redis-down", "Redis stopped, started again", outage("redis", lambda o: o.redis_outage_s)),
    Scenario(
        "broker-killed",
        "3-broker KRaft cluster (RF 3, min ISR 2): the partition leader SIGKILLed",
        kill_partition_leader,
        brokers=3,
    ),
    Scenario(
        "ws-drops",
        "WebSocket dropped every N frames, with id gaps (REST backfill, paced: gaps stored after later trades)",
        simulator_args=lambda o: ["--drop-every", str(o.drop_every), "--gap-every", str(o.gap_every)],
        env=lambda o: {"INGEST_BACKFILL_MIN_INTERVAL_S": str(o.backfill_interval_s)},
    ),
    Scenario(
        "bad-input",
        "malformed exchange frames, and hostile records produced straight onto the topic",
        simulator_args=lambda o: ["--malformed-rate", str(o.malformed_rate)],
        hostile=True,
    ),
    Scenario("rebalance", "a second consumer joins and leaves the group, again and again", rebalance, at=0.05),
]


def by_name(names: list[str] | None) -> list[Scenario]:
    """The scenarios named (all when ``names`` is empty), in the table's order."""
    if not names:
        return list(SCENARIOS)
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [s for s in SCENARIOS if s.name in names]
