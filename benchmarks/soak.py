"""``make soak``: the whole pipeline for ``SOAK_MINUTES`` (default 60) at 2,000 trades/s, watched for slow leaks.

The processes of the Procfile, for three exchanges (Binance, Coinbase, Kraken), on a stack of their own
(``SOAK_STACK``, default 15: not the suite's 0, 6, 9, 11-14, 16 and 20 up, nor chaos's 7-8, nor the demo's
ports): a synthetic simulator per exchange (``--rate`` a third of the total each, trades stamped with the sending
clock),
``ingest --channels trades`` per exchange, ``consume_trades``, the Celery workers (pipeline, notify, ml, backtest)
and beat, the stand-ins of the notify worker, and daphne. A user signs in to the Binance BTCUSDT page in headless
Chromium and keeps it open; the API is polled with the user's token.

Every ``--sample`` seconds the harness records each process's RSS (its whole tree: Celery's pool children
included; Chromium as ``chromium``; the stack's servers as ``server-*``, by PSS, reported but not judged), its CPU
seconds, the machine's load, the consumer group's Kafka lag, and the push latencies the page saw (a
wrapper of the page's ``WebSocket`` stamps each ``trades`` push on arrival: ``Date.now()`` minus each trade's
exchange event time ``t``). A thread polls the API once a second. At the end every log is scanned for error lines
and :mod:`benchmarks.soak_analysis` computes the figures and a verdict per target.

Results: ``bench-results/soak.json``, the RSS plot ``docs/soak-rss.png`` (Chart.js in the same Chromium:
matplotlib is not a dependency), a table on stdout. Exit 0 only when every target is met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from array import array
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition

from benchmarks import soak_analysis as analysis
from benchmarks.harness import ROOT, cpu_seconds, free_port, manage, port_open, process_tree
from chaos.harness import Stack, Supervisor, stack_environment

DEFAULT_STACK = 15
PARTITIONS = 6
# the simulators stand in for the exchanges and the servers are not the project's code (their memory is the JVM's
# heap, PostgreSQL's buffers and caches filling up): reported, not judged
NOT_JUDGED_PREFIXES = ("sim-", "server-")
REDIS_VARIABLES = ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CHANNEL_LAYER_URL", "CACHE_URL")
# (exchange, the symbols its simulator and ingest use): the Procfile's three, two markets each.
EXCHANGES = (
    ("binance", "BTCUSDT,ETHUSDT"),
    ("coinbase", "BTC-USD,ETH-USD"),
    ("kraken", "BTC/USD,ETH/USD"),
)
PAGE = "/market/binance/BTCUSDT/"
API_PATHS = (
    "/api/v1/candles?exchange=binance&symbol=BTCUSDT&interval=1m&limit=100",
    "/api/v1/trades?exchange=coinbase&symbol=BTC-USD&limit=50",
    "/api/v1/stats",
    "/api/v1/symbols",
    "/api/v1/whales?limit=20",
    "/api/v1/indicators?exchange=kraken&symbol=BTC/USD&interval=1m&limit=50",
)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
# Stamps every ``trades`` push the page's sockets receive: [receive ms, receive ms - trade time] per trade.
LATENCY_HOOK = """
(() => {
  const Native = window.WebSocket;
  window.__soak = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => {
        const now = Date.now();
        try {
          const push = JSON.parse(event.data);
          if (push && push.kind === 'trades' && Array.isArray(push.trades)) {
            for (const trade of push.trades) {
              if (trade && typeof trade.t === 'number') window.__soak.push(now, now - trade.t);
            }
          }
        } catch (_) { /* not JSON: not a push */ }
      });
    }
  };
})();
"""
TOKEN_SCRIPT = """
import os
from django.contrib.auth import get_user_model
from accounts.tokens import create_token
User = get_user_model()
User.objects.filter(username="soak").delete()
user = User.objects.create_user("soak", password=os.environ["SOAK_PASSWORD"])
print(create_token(user, "soak", days=7)[1])
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options (``SOAK_MINUTES`` and ``SOAK_STACK`` are the defaults of ``--minutes`` and ``--stack``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 60))
    parser.add_argument("--stack", type=int, default=int(os.environ.get("SOAK_STACK") or DEFAULT_STACK))
    parser.add_argument("--rate", type=float, default=2000.0, help="trades/s offered, all exchanges (2000)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS, lag and latency samples")
    parser.add_argument("--api-interval", type=float, default=1.0, help="seconds between API polls")
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results/soak.json")
    parser.add_argument("--png", type=Path, default=ROOT / "docs/soak-rss.png")
    parser.add_argument("--logs", type=Path, default=ROOT / "artifacts/soak")
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    opts = parser.parse_args(argv)
    if opts.minutes <= 0 or opts.rate <= 0 or opts.sample <= 0 or opts.api_interval <= 0:
        parser.error("--minutes, --rate, --sample and --api-interval must be positive")
    return opts


# --------------------------------------------------------------------------------------------- set-up
def database_url(stack: Stack) -> str:
    """The soak's database on the stack's server."""
    return stack.database_url.rsplit("/", 1)[0] + "/crypto_soak"


def setup_database(stack: Stack, url: str) -> None:
    """Create ``crypto_soak`` when missing, migrate it, and empty the tables a run writes (synthetic trade ids start
    again every run) and the Redis database."""
    parts = urlsplit(url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'crypto_soak'").fetchone():
            conn.execute("CREATE DATABASE crypto_soak")
    env = dict(stack.env, DATABASE_URL=url, DJANGO_DEBUG="true", PYTHONPATH=str(ROOT))
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), cwd=ROOT, env=env, check=True)
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND (tablename LIKE 'analytics\\_%'"
                " OR tablename LIKE 'alerts\\_%' OR tablename LIKE 'notifications\\_%')"
            )
        ]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
    redis.Redis.from_url(stack.redis_url).flushdb()


def create_user(env: dict[str, str], password: str) -> str:
    """The user ``soak`` (the browser signs in as it) and an API token for the poller."""
    done = subprocess.run(
        manage("shell", "-c", TOKEN_SCRIPT),
        cwd=ROOT,
        env=dict(env, SOAK_PASSWORD=password),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def processes(opts: argparse.Namespace, tag: str, logs: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (argv, extra environment): the Procfile's processes for the three exchanges, on free ports."""
    celery = [sys.executable, "-m", "celery", "-A", "cryptoproject"]
    per_exchange = opts.rate / len(EXCHANGES)
    result: dict[str, tuple[list[str], dict[str, str]]] = {}
    for exchange, symbols in EXCHANGES:
        port = free_port()
        result[f"sim-{exchange}"] = (
            manage(
                *("simulate_exchange", "--exchange", exchange, "--port", str(port), "--synthetic"),
                *("--rate", f"{per_exchange:g}", "--symbols", symbols, "--seed", "7"),
            ),
            {},
        )
        up = exchange.upper()
        result[f"ingest-{exchange}"] = (
            manage(
                *("ingest", "--exchange", exchange, "--symbols", symbols.lower() if exchange == "binance" else symbols),
                *("--channels", "trades", "--metrics-port", str(free_port())),
            ),
            {f"{up}_WS_URL": f"ws://127.0.0.1:{port}", f"{up}_REST_URL": f"http://127.0.0.1:{port}"},
        )
    twilio, telegram = free_port(), free_port()
    stand_ins = {
        "TWILIO_API_URL": f"http://127.0.0.1:{twilio}",
        "TWILIO_ACCOUNT_SID": "ACdemo",
        "TWILIO_AUTH_TOKEN": "demo-token",
        "TWILIO_FROM": "+15005550006",
        "TELEGRAM_API_URL": f"http://127.0.0.1:{telegram}",
        "TELEGRAM_BOT_TOKEN": "123456:demo",
    }
    result["consumer"] = (manage("consume_trades"), {})
    result["worker"] = ([*celery, "worker", "-Q", "analytics,alerts,default", "-c", "2", "-n", f"soak-{tag}@%h"], {})
    result["notify-worker"] = ([*celery, "worker", "-Q", "notify", "-c", "1", "-n", f"notify-{tag}@%h"], stand_ins)
    result["standins"] = (
        manage(
            *("run_standins", "--twilio-port", str(twilio), "--telegram-port", str(telegram)),
            *("--dir", str(logs / "standins")),
        ),
        stand_ins,
    )
    result["ml-worker"] = ([*celery, "worker", "-Q", "ml", "-c", "1", "-n", f"ml-{tag}@%h"], {})
    result["backtest-worker"] = ([*celery, "worker", "-Q", "backtest", "-c", "1", "-n", f"backtest-{tag}@%h"], {})
    result["beat"] = ([*celery, "beat", "--schedule", str(logs / "celerybeat-schedule")], {})
    return result


# --------------------------------------------------------------------------------------------- observations
def tree_rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and its descendants, in MB (0 when gone)."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of ``pid`` and its descendants, in MB: PostgreSQL's backends share its buffers, which
    RSS would count once per backend."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


def server_pids(stack_dir: Path) -> dict[str, int]:
    """The stack's servers (``scripts/stack.sh``'s pid files): kafka, postgres, redis; those not found left out."""
    found = {}
    for name, pid_file in (
        ("kafka", stack_dir / "kafka/kafka.pid"),
        ("postgres", stack_dir / "postgres/postmaster.pid"),
        ("redis", stack_dir / "redis/redis.pid"),
    ):
        with contextlib.suppress(OSError, ValueError, IndexError):
            found[f"server-{name}"] = int(pid_file.read_text().split()[0])
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    return sum(cpu_seconds(p) or 0.0 for p in process_tree(pid))


def chromium_pid() -> int | None:
    """The browser process Playwright started (a descendant of this process whose parent is no Chromium)."""
    for pid in process_tree(os.getpid())[1:]:
        with contextlib.suppress(OSError):
            if "chrom" in Path(f"/proc/{pid}/comm").read_text():
                parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
                if "chrom" not in Path(f"/proc/{parent}/comm").read_text():
                    return pid
    return None


class Lag:
    """The consumer group's lag on the run's topic: end offsets minus committed offsets, summed."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        # A probe in the group that never subscribes: it reads the group's committed offsets, it never joins.
        self.probe = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","), group_id=group, enable_auto_commit=False, request_timeout_ms=5000
        )

    def sample(self) -> int | None:
        """Records produced but not committed by the group; None when Kafka does not answer."""
        try:
            ends = self.probe.end_offsets(self.partitions)
            committed = sum(self.probe.committed(tp) or 0 for tp in self.partitions)
        except Exception:  # noqa: BLE001 - a missed sample, not a failed run
            return None
        return int(sum(ends.values()) - committed)

    def close(self) -> None:
        """Close the probe."""
        self.probe.close(autocommit=False)


class ApiPoller(threading.Thread):
    """Polls the API paths in turn with the user's token: (seconds since the start, status, milliseconds)."""

    def __init__(self, base: str, token: str, interval: float, t0: float) -> None:
        super().__init__(name="soak-api", daemon=True)
        self.base, self.token, self.interval, self.t0 = base, token, interval, t0
        self.samples: list[tuple[float, int, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        """Until stopped: one request per interval, round robin over ``API_PATHS``."""
        i = 0
        while not self.stopping.wait(self.interval):
            path = API_PATHS[i % len(API_PATHS)]
            i += 1
            request = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.token}"})
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # our own daphne, on loopback
                    response.read()
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = 0
            self.samples.append((started - self.t0, status, (time.monotonic() - started) * 1000))


def open_page(pw: Any, base: str, password: str) -> tuple[Any, Any]:
    """Headless Chromium signed in as ``soak`` on the Binance BTCUSDT page, live; (browser, page)."""
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.add_init_script(LATENCY_HOOK)
    page = context.new_page()
    page.goto(base + PAGE)
    page.fill("input[name=username]", "soak")
    page.fill("input[name=password]", password)
    page.click("form[action='/accounts/login/'] button[type=submit]")
    page.wait_for_selector("body[data-loaded=true]", timeout=60_000)
    page.wait_for_selector("#conn-status[data-state=live]", timeout=60_000)
    return browser, page


# --------------------------------------------------------------------------------------------- the run
def run(opts: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, run the pipeline on it, stop it (unless ``--keep``); the raw samples and run facts."""
    stack = Stack(stack_environment(opts.stack))
    stack.run("up")
    try:
        return run_pipeline(opts, stack)
    finally:
        if not opts.keep:
            stack.run("down")


def run_pipeline(opts: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    """Start the pipeline, watch it for ``--minutes``, stop it; the raw samples and run facts."""
    from playwright.sync_api import sync_playwright

    url = database_url(stack)
    setup_database(stack, url)
    tag = uuid.uuid4().hex[:8]
    logs = opts.logs
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    # Ingest's spill journal, fresh: one a failed run left must not be replayed into this run's topics.
    shutil.rmtree(logs / "journal", ignore_errors=True)
    topic, dlq, group = f"soak.trades.{tag}", f"soak.dlq.{tag}", f"soak-{tag}"
    web_port = free_port()
    env = dict(
        stack.env,
        DATABASE_URL=url,
        **dict.fromkeys(REDIS_VARIABLES, stack.redis_url),
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        KAFKA_TRADES_TOPIC=topic,
        KAFKA_DLQ_TOPIC=dlq,
        KAFKA_CONSUMER_GROUP=group,
        # The Procfile's local settings (DEBUG, the stand-ins over http), with login required as in production.
        DJANGO_DEBUG="true",
        DASHBOARD_LOGIN_REQUIRED="true",
        NOTIFY_ALLOW_INSECURE_APIS="true",
        LOG_LEVEL="INFO",
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="cryptoproject.settings",
        INGEST_JOURNAL_DIR=str(logs / "journal"),
    )
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap.split(","), request_timeout_ms=20000)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1), NewTopic(dlq, 1, 1)], timeout_ms=20000)
    finally:
        admin.close()
    password = secrets.token_urlsafe(16)
    token = create_user(env, password)

    supervisor = Supervisor(env, logs)
    names: list[str] = []
    rss: dict[str, list[tuple[float, float]]] = {}
    lag_points: list[tuple[float, float]] = []
    cpu: dict[str, list[tuple[float, float]]] = {}  # CPU seconds used so far, per process tree
    load_points: list[tuple[float, float]] = []  # the machine's 1-minute load average
    lat_t, lat_ms = array("d"), array("d")
    lag = Lag(stack.bootstrap, topic, group)
    poller: ApiPoller | None = None
    facts: dict[str, Any] = {"stack": opts.stack, "topic": topic, "group": group}
    try:
        # The web first (the page waits for it), then the markets, ingest, the consumer, the workers and beat.
        daphne = [str(ROOT / ".venv/bin/daphne"), "-b", "127.0.0.1", "-p", str(web_port)]
        supervisor.start("web", [*daphne, "cryptoproject.asgi:application"])
        names.append("web")
        for name, (argv, extra) in processes(opts, tag, logs).items():
            # `env K=V argv` (as the Procfile does): a restart by the supervisor keeps the process's own settings.
            supervisor.start(name, ["env", *(f"{k}={v}" for k, v in extra.items()), *argv])
            names.append(name)
        deadline = time.monotonic() + 90
        while not port_open(web_port):
            if time.monotonic() > deadline:
                raise RuntimeError("daphne did not listen within 90 s")
            time.sleep(0.5)
        base = f"http://127.0.0.1:{web_port}"
        with sync_playwright() as pw:
            browser, page = open_page(pw, base, password)
            browser_pid = chromium_pid()
            servers = server_pids(Path(stack.env["STACK_DIR"]))

            def pids() -> dict[str, int]:
                live = {n: supervisor.procs[n].pid for n in names if supervisor.procs[n].poll() is None}
                return live if browser_pid is None else {**live, "chromium": browser_pid}

            t0 = time.monotonic()
            facts["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            epoch0_ms = time.time() * 1000
            poller = ApiPoller(base, token, opts.api_interval, t0)
            poller.start()
            duration = opts.minutes * 60
            next_sample = t0
            while True:
                now = time.monotonic()
                t = now - t0
                supervisor.watch()  # restarts (counted) whatever exited
                for name in names:
                    proc = supervisor.procs[name]
                    if proc.poll() is None:
                        rss.setdefault(name, []).append((t, tree_rss_mb(proc.pid)))
                if browser_pid is not None:
                    rss.setdefault("chromium", []).append((t, tree_rss_mb(browser_pid)))
                for name, pid in servers.items():
                    rss.setdefault(name, []).append((t, tree_pss_mb(pid)))
                for name, pid in {**pids(), **servers}.items():
                    cpu.setdefault(name, []).append((t, tree_cpu_seconds(pid)))
                load_points.append((t, os.getloadavg()[0]))
                value = lag.sample()
                if value is not None:
                    lag_points.append((t, float(value)))
                flat = page.evaluate("() => window.__soak.splice(0)")
                for i in range(0, len(flat) - 1, 2):
                    lat_t.append((flat[i] - epoch0_ms) / 1000.0)
                    lat_ms.append(flat[i + 1])
                if t >= duration:
                    break
                next_sample += opts.sample
                page.wait_for_timeout(max(0.0, next_sample - time.monotonic()) * 1000)
            facts["duration_s"] = round(time.monotonic() - t0, 1)
            facts["page_status"] = page.get_attribute("#conn-status", "data-state")
            poller.stopping.set()
            browser.close()
    finally:
        if poller is not None:
            poller.stopping.set()
        lag.close()
        supervisor.stop_all()
    facts["restarts"] = {n: supervisor.restarts.get(n, 0) for n in names}
    return {
        "facts": facts,
        "rss": rss,
        "cpu": cpu,
        "load": load_points,
        "lag": lag_points,
        "latency": list(zip(lat_t, lat_ms, strict=True)),
        "api": poller.samples if poller else [],
        "logs": {p.stem: p.read_text(errors="replace") for p in sorted(logs.glob("*.log"))},
    }


def analyse(raw: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    """The report: per-process RSS, lag, latency and API windows, error lines and the verdicts."""
    facts = raw["facts"]
    duration = float(facts.get("duration_s") or opts.minutes * 60)
    window = analysis.window_seconds(duration)
    rss = {n: analysis.rss_summary(points, window, window, duration) for n, points in sorted(raw["rss"].items())}
    for name, points in raw["cpu"].items():
        if name in rss and len(points) >= 2 and points[-1][0] > points[0][0]:
            # CPU used over the run (a restarted process counts from its restart), as % of one core
            used, span = max(0.0, points[-1][1] - points[0][1]), points[-1][0] - points[0][0]
            rss[name]["cpu_pct"] = round(used / span * 100, 1)
    load = analysis.window_percentiles(raw["load"], window, duration)
    latency = analysis.window_percentiles([(t, ms) for t, ms in raw["latency"] if t >= 0], window, duration)
    api_points = [(t, ms) for t, _status, ms in raw["api"]]
    api = analysis.window_percentiles(api_points, window, duration)
    lag = analysis.window_lag(raw["lag"], window, duration)
    count, first = analysis.error_lines(raw["logs"])
    verdicts = [
        analysis.rss_verdict(rss, exempt=[n for n in rss if n.startswith(NOT_JUDGED_PREFIXES)]),
        analysis.lag_verdict(lag, window, opts.rate),
        analysis.p99_verdict(latency, window),
        analysis.errors_verdict(count),
        analysis.restarts_verdict(facts["restarts"]),
        analysis.api_verdict([status for _t, status, _ms in raw["api"]]),
    ]
    all_api = [ms for _t, _s, ms in raw["api"]]
    return {
        "workload": {
            "minutes": opts.minutes,
            "rate": opts.rate,
            "exchanges": {e: s.split(",") for e, s in EXCHANGES},
            "page": PAGE,
            "api_paths": list(API_PATHS),
            "api_interval_s": opts.api_interval,
            "sample_s": opts.sample,
        },
        "run": facts,
        "window_s": round(window, 1),
        "warmup_s": round(window, 1),
        "rss": rss,
        "lag": {"windows": lag, "final": int(raw["lag"][-1][1]) if raw["lag"] else None},
        "push_latency": {
            "windows": latency,
            "all": analysis.window_percentiles(raw["latency"], duration + 1, duration)[0],
        },
        "api": {
            "windows": api,
            "polls": len(all_api),
            "p50_ms": analysis.percentile(all_api, 0.5),
            "p99_ms": analysis.percentile(all_api, 0.99),
        },
        "errors": {"count": count, "first": first},
        "verdicts": [v.as_dict() for v in verdicts],
        "ok": all(v.ok for v in verdicts),
        "series": {
            "rss": {n: [[round(t, 1), round(mb, 1)] for t, mb in points] for n, points in raw["rss"].items()},
            "lag": [[round(t, 1), int(v)] for t, v in raw["lag"]],
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_at_end": os.getloadavg(),
            "load_1m_median_per_window": [w["p50_ms"] for w in load],
        },
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as plain-text tables (the ones docs/RELIABILITY.md shows)."""
    w = report["workload"]
    lines = [
        f"soak: {report['run'].get('duration_s', 0):.0f} s at {w['rate']:,.0f} trades/s over "
        f"{', '.join(w['exchanges'])}; windows of {report['window_s']:.0f} s, the first the warm-up",
        "",
        "| process | start MB | peak MB | end MB | slope MB/h | after warm-up MB/h | growth after warm-up | CPU % |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def f(v: Any, spec: str = ",.1f") -> str:
        return "-" if v is None else format(v, spec)

    for name, s in report["rss"].items():
        growth = s.get("growth_after_warmup_pct")
        label = f"{name} (not judged)" if name.startswith(NOT_JUDGED_PREFIXES) else name
        lines.append(
            f"| {label} | {f(s.get('start_mb'))} | {f(s.get('peak_mb'))} | {f(s.get('end_mb'))} | "
            f"{f(s.get('slope_mb_per_h'), '+,.1f')} | {f(s.get('slope_after_warmup_mb_per_h'), '+,.1f')} | "
            f"{'-' if growth is None else f'{growth:+.1f} %'} | {f(s.get('cpu_pct'), '.0f')} |"
        )
    lines += [
        "",
        "| window | trades seen | push p50 ms | push p99 ms | lag min/median/max | API polls | API p50 ms "
        "| API p99 ms | load 1m |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    loads = report["machine"]["load_1m_median_per_window"]
    for lat, lag, api, load in zip(
        report["push_latency"]["windows"], report["lag"]["windows"], report["api"]["windows"], loads, strict=True
    ):
        lines.append(
            f"| {lat['start_s']:.0f}-{lat['end_s']:.0f} s | {lat['count']:,} | {f(lat['p50_ms'])} | "
            f"{f(lat['p99_ms'])} | {f(lag['min'], ',')}/{f(lag['median'], ',')}/{f(lag['max'], ',')} | "
            f"{api['count']:,} | {f(api['p50_ms'])} | {f(api['p99_ms'])} | {f(load)} |"
        )
    lines += ["", f"error lines: {report['errors']['count']}"]
    lines += [f"  {line}" for line in report["errors"]["first"]]
    lines += ["", "| target | verdict | detail |", "|---|---|---|"]
    for v in report["verdicts"]:
        word = "met" if v["ok"] else "no data" if v["ok"] is None else "NOT met"
        lines.append(f"| {v['target']} | {word} | {v['detail']} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- the plot
PLOT_PAGE = """<!doctype html><html><body style="margin:0;background:#fff">
<div style="width:1200px;height:520px"><canvas id="mb"></canvas></div>
<div style="width:1200px;height:400px"><canvas id="pct"></canvas></div>
<script>%(chartjs)s</script>
<script>
const data = %(data)s;
const colours = ['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2','#7f7f7f','#bcbd22',
                 '#17becf','#393b79','#637939','#8c6d31','#843c39','#7b4173','#3182bd','#e6550d','#31a354',
                 '#756bb1','#636363'];
const names = Object.keys(data.series).sort();
function chart(id, title, yLabel, y, shown) {
  new Chart(document.getElementById(id), {
    type: 'line',
    data: {datasets: names.filter(shown).map((name) => {
      const points = data.series[name], colour = colours[names.indexOf(name) %% colours.length];
      // dashed: reported, not judged (the exchanges' stand-ins, the stack's servers)
      return {label: name, data: points.map(([t, mb]) => ({x: t / 60, y: y(mb, points)})),
              borderColor: colour, backgroundColor: colour, pointRadius: 0, borderWidth: 1.5,
              borderDash: data.judged.includes(name) ? [] : [6, 3]};
    })},
    options: {animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
      plugins: {title: {display: true, text: title}, legend: {position: 'right'}},
      scales: {x: {type: 'linear', min: 0, max: data.minutes,
                   title: {display: true, text: 'minutes since the start'}},
               y: {title: {display: true, text: yLabel}}}}
  });
}
chart('mb', data.title + ' (dashed: not judged)', 'MB: RSS of the process tree (servers: PSS)', (mb) => mb,
      () => true);
chart('pct', 'The judged processes relative to the end of the warm-up (' + data.warmup_min.toFixed(1) + ' min), %%',
      '%% of the warm-up level', (mb, points) => {
        const base = (points.find(([t]) => t >= data.warmup_min * 60) || points[points.length - 1])[1];
        return 100 * mb / base;
      }, (name) => data.judged.includes(name));
window.__drawn = true;
</script></body></html>"""


def render_png(report: dict[str, Any], path: Path) -> None:
    """RSS per process over time as a PNG: Chart.js (the dashboard's vendored copy) in headless Chromium."""
    from playwright.sync_api import sync_playwright

    chartjs = (ROOT / "dashboard/static/vendor/chart.js/chart.umd.min.js").read_text()
    title = (
        f"make soak: RSS per process, {report['run'].get('duration_s', 0) / 60:.1f} min at "
        f"{report['workload']['rate']:,.0f} trades/s ({report['run'].get('started_at', '')})"
    )
    series = report["series"]["rss"]
    judged = [n for n in series if not n.startswith(NOT_JUDGED_PREFIXES)]
    minutes = round(report["run"].get("duration_s", 0) / 60, 2)
    data = json.dumps(
        {"series": series, "judged": judged, "title": title, "warmup_min": report["warmup_s"] / 60, "minutes": minutes}
    )
    html = PLOT_PAGE % {"chartjs": chartjs, "data": data.replace("</", "<\\/")}
    path.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 920})
            page.set_content(html)
            page.wait_for_function("window.__drawn === true")
            page.screenshot(path=str(path))
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    """Run, write the JSON and the PNG, print the tables; 0 only when every target is met."""
    opts = parse_args(argv)
    wall = time.monotonic()
    print(f"[soak] {opts.minutes:g} min at {opts.rate:,.0f} trades/s on stack {opts.stack}", flush=True)
    raw = run(opts)
    report = analyse(raw, opts)
    report["run"]["wall_s"] = round(time.monotonic() - wall, 1)
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    opts.json.write_text(json.dumps(report, indent=2) + "\n")
    render_png(report, opts.png)
    print(format_table(report))
    print(f"[soak] {opts.json}, {opts.png}; wall {report['run']['wall_s']:.0f} s", flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
