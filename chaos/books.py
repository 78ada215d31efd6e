"""The order-book scenarios of ``make chaos``: the Binance book pipeline under faults, against the recording.

Per scenario, on a stack of its own: fresh topics, consumer group and book tables; the simulator replays the bundled
Binance recording (its REST snapshot and 6,495 ``depth@100ms`` events, once, at ``speed`` x the recorded pace;
depth is played once, so there is no loop); ``ingest --channels books`` and ``consume_books`` run under the
harness's supervisor, which restarts whatever exits. The fault strikes once the simulator has sent ``at`` of the
events (its ``/api/v3/depth`` ``lastUpdateId``). When a valid snapshot row and a metrics row at the recording's last
update id are stored (or a deadline passes), the stored books are compared with :mod:`chaos.booktruth`:

- **never silently wrong**: every stored row marked valid (each ``BOOK_STORE_EVERY_S`` snapshot and each 1 s
  metrics row) equals the independent book right after the event its ``last_id`` names, at that event's time: the
  top ``BOOK_DEPTH_LEVELS`` a side for a snapshot; best bid and ask, spread, mid and the 10 bps depths for a metrics
  row (the 1 % band is left out: it depends on how deep a resync's snapshot reached, docs/BOOKS.md). A row not valid
  holds no level and no metric;
- **the end is right**: the last snapshot and metrics rows are valid, at the recording's last update id and time,
  and equal to the truth there;
- **resyncs are counted**: ingest's ``book_resyncs`` (summed over its lives) must be above 0 where the fault loses
  events, and every break the consumer saw must come from one;
- **nothing lost without a break**: when nothing broke (no resync, no consumer break), every window and every second
  of the recording is stored, valid, at its last event (after a break the windows the book was down are missing or
  not valid, by design);
- **no duplicate** row per market and window (or second);
- a consumer restart resumes from its replay checkpoint (``replay_from`` below the committed offset in its log).

Like :mod:`chaos.harness`, this module never imports the project's apps: it is the outside observer.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from benchmarks import harness
from benchmarks.harness import ROOT, free_port, manage
from chaos import booktruth
from chaos.harness import RECORDINGS, Stack, Supervisor

EXCHANGE = "binance"
SYMBOL = "BTCUSDT"
PARTITIONS = 6
#: the metrics columns the truth recomputes (docs/BOOKS.md, "Metrics"; the 1 % band and the imbalance left out)
METRIC_COLUMNS = ("best_bid", "best_ask", "spread", "mid", "bid_depth_10bps", "ask_depth_10bps")


@dataclass
class BookOptions:
    """The size of the book workload and of its faults (``make chaos`` defaults; the tests shrink them)."""

    speed: float = 6.0  # x the recorded pace: the recording's 650 s of depth in about 110 s
    kafka_outage_s: float = 30.0
    restart_pause_s: float = 2.0
    ws_drop_every: int = 1000  # frames per connection before the simulator drops it
    depth_drop_every: int = 1000  # every N-th depth event never sent
    store_every_s: int = 10  # BOOK_STORE_EVERY_S
    depth_levels: int = 50  # BOOK_DEPTH_LEVELS
    snapshot_every_s: float = 10.0  # BOOK_SNAPSHOT_EVERY_S: how much a consumer restart re-reads
    drain_timeout_s: float = 120.0
    logs: Path = ROOT / "artifacts/chaos"
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class BookRow:
    """One book scenario's outcome: the line of the books table."""

    scenario: str
    events: int = 0  # the recording's events after its snapshot
    snapshots: int = 0  # snapshot rows stored
    snapshots_valid: int = 0
    snapshots_wrong: int = 0  # valid rows that differ from the truth at their last_id (or name no event)
    metrics: int = 0
    metrics_valid: int = 0
    metrics_wrong: int = 0
    invalid_not_empty: int = 0  # rows not valid that still hold levels or metrics
    windows_expected: int = 0
    windows_missing: int = 0  # windows (and seconds) of the recording not stored valid at their last event
    duplicates: int = 0
    final_ok: bool = False  # the last snapshot and metrics rows: valid, the last id and time, equal to the truth
    resyncs: int = 0  # ingest's book_resyncs, over its lives
    syncs: int = 0
    consumer_breaks: int = 0  # deltas that did not chain at the consumer (its lives summed)
    replays: list[tuple[int, int]] = field(default_factory=list)  # (replay_from, committed) at each assignment
    restarts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    completed: bool = False
    expects_resync: bool = False
    expects_replay: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The stored books never wrong, the end right, the resyncs and the consumer's replay as the fault wants."""
        broke = bool(self.resyncs or self.consumer_breaks)
        return (
            self.completed
            and self.final_ok
            and not (self.snapshots_wrong or self.metrics_wrong or self.invalid_not_empty or self.duplicates)
            and (broke or self.windows_missing == 0)
            and (self.resyncs > 0 or not self.expects_resync)
            and (self.consumer_breaks == 0 or self.resyncs > 0)
            and (not self.expects_replay or any(start < committed for start, committed in self.replays))
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the verdict."""
        return {**asdict(self), "ok": self.ok}


class BookRun:
    """The state of one book scenario's run, shared by the main loop and the fault thread."""

    def __init__(self, scenario: BookScenario, opts: BookOptions, stack: Stack) -> None:
        self.scenario = scenario
        self.opts = opts
        self.stack = stack
        tag = uuid.uuid4().hex[:8]
        self.topic, self.dlq, self.group = f"chaos.books.{tag}", f"chaos.dlq.{tag}", f"chaos-books-{tag}"
        self.port = free_port()
        self.logs = opts.logs / scenario.name
        self.logs.mkdir(parents=True, exist_ok=True)
        for old in self.logs.glob("*.log"):
            old.unlink()
        self.env = dict(
            stack.env,
            **{
                "DATABASE_URL": stack.database_url,
                "REDIS_URL": stack.redis_url,
                "CELERY_BROKER_URL": stack.redis_url,
                "CHANNEL_LAYER_URL": stack.redis_url,
                "CACHE_URL": stack.redis_url,
                "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
                "KAFKA_TRADES_TOPIC": f"chaos.trades.{tag}",
                "KAFKA_BOOKS_TOPIC": self.topic,
                "KAFKA_DLQ_TOPIC": self.dlq,
                "KAFKA_BOOKS_CONSUMER_GROUP": self.group,
                "BINANCE_WS_URL": f"ws://127.0.0.1:{self.port}",
                "BINANCE_REST_URL": f"http://127.0.0.1:{self.port}",
                "BOOK_STORE_EVERY_S": str(opts.store_every_s),
                "BOOK_DEPTH_LEVELS": str(opts.depth_levels),
                "BOOK_SNAPSHOT_EVERY_S": str(opts.snapshot_every_s),
                "BOOK_RETENTION_DAYS": "36500",  # the recording is from 2024
                "DJANGO_DEBUG": "false",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
                "LOG_LEVEL": "INFO",
                "PYTHONPATH": str(ROOT),
                "DJANGO_SETTINGS_MODULE": "cryptoproject.settings",
                "INGEST_JOURNAL_DIR": str(self.logs / "journal"),
                **opts.extra_env,
                **scenario.env(opts),
            },
        )
        self.supervisor = Supervisor(self.env, self.logs)
        self.fault_error: BaseException | None = None
        self.notes: list[str] = []

    def sent_id(self) -> int | None:
        """The last update id the simulator's market has sent (its REST book's ``lastUpdateId``), or None."""
        url = f"http://127.0.0.1:{self.port}/api/v3/depth?symbol={SYMBOL}&limit=1"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # our own simulator, on loopback
                return int(json.loads(response.read())["lastUpdateId"])
        except (OSError, ValueError, LookupError, TypeError):
            return None

    def stored_final(self, final_id: int) -> bool:
        """Whether a valid snapshot row and a valid metrics row at ``final_id`` are stored."""
        try:
            with psycopg.connect(self.stack.database_url, connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM books_booksnapshot WHERE valid AND last_id = %(u)s),"
                    " (SELECT count(*) FROM books_bookmetric WHERE valid AND last_id = %(u)s)",
                    {"u": final_id},
                ).fetchone()
        except psycopg.Error:
            return False
        return row is not None and bool(row[0]) and bool(row[1])

    def start_pipeline(self) -> None:
        """The simulator (its port), then the books consumer and ingest's books channel."""
        sim = [
            *manage("simulate_exchange", "--exchange", EXCHANGE, "--port", str(self.port)),
            *["--replay", *map(str, RECORDINGS), "--speed", str(self.opts.speed), "--seed", "7"],
            *self.scenario.simulator_args(self.opts),
        ]
        self.supervisor.start("simulator", sim)
        deadline = time.monotonic() + 60
        while self.sent_id() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not answer on port {self.port}")
            time.sleep(0.2)
        self.supervisor.start("consume_books", manage("consume_books"))
        self.supervisor.start(
            "ingest",
            manage("ingest", "--exchange", EXCHANGE, "--symbols", SYMBOL, "--channels", "books", "--metrics-port", "0"),
        )


@dataclass(frozen=True)
class BookScenario:
    """A fault on the book pipeline and when it strikes (the fraction ``at`` of the recording's events sent)."""

    name: str
    description: str
    fault: Callable[[BookRun], None] | None = None
    at: float = 0.4
    simulator_args: Callable[[BookOptions], list[str]] = lambda _o: []
    env: Callable[[BookOptions], dict[str, str]] = lambda _o: {}
    expects_resync: bool = False
    expects_replay: bool = False


def _pause(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))


def kill_consumer(run: BookRun) -> None:
    """SIGKILL ``consume_books`` mid-stream, start it again after a short pause."""
    run.supervisor.signal("consume_books", signal.SIGKILL, hold=True)
    _pause(run.opts.restart_pause_s)
    run.supervisor.release("consume_books")


def kafka_down(run: BookRun) -> None:
    """Stop the Kafka broker for ``kafka_outage_s`` while the market goes on, then start it."""
    run.stack.run("down", "kafka")
    _pause(run.opts.kafka_outage_s)
    run.stack.run("up", "kafka")


BOOK_SCENARIOS: list[BookScenario] = [
    BookScenario(
        "books-ws-drops",
        "the depth WebSocket dropped every N frames (no close frame): the events sent meanwhile are lost",
        simulator_args=lambda o: ["--drop-every", str(o.ws_drop_every)],
        expects_resync=True,
    ),
    BookScenario(
        "books-delta-drop",
        "every N-th depth event never sent (the exchange's book, and so REST, has it)",
        simulator_args=lambda o: ["--depth-drop-every", str(o.depth_drop_every)],
        expects_resync=True,
    ),
    BookScenario("books-kafka-down", "the Kafka broker stopped, started again", kafka_down, at=0.3),
    BookScenario(
        "books-kill-consumer",
        "SIGKILL consume_books mid-stream, restarted from its replay checkpoint",
        kill_consumer,
        expects_replay=True,
    ),
]


def book_scenarios(names: list[str] | None) -> list[BookScenario]:
    """The book scenarios named (all when ``names`` is None), in the table's order; unknown names are refused."""
    if names is None:
        return list(BOOK_SCENARIOS)
    known = {s.name: s for s in BOOK_SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown book scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [s for s in BOOK_SCENARIOS if s.name in names]


def reset_books(stack: Stack) -> None:
    """Empty the book tables (both series and the consumers' checkpoints)."""
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE books_booksnapshot, books_bookmetric, books_replaycheckpoint")


def create_topics(run: BookRun) -> None:
    """The run's books and dead-letter topics."""
    admin = KafkaAdminClient(bootstrap_servers=run.stack.bootstrap.split(","), request_timeout_ms=20000)
    try:
        admin.create_topics([NewTopic(run.topic, PARTITIONS, 1), NewTopic(run.dlq, 1, 1)], timeout_ms=20000)
    finally:
        admin.close()


def run_book_scenario(scenario: BookScenario, opts: BookOptions, stack: Stack, truth: booktruth.BookTruth) -> BookRow:
    """Run one book scenario end to end and check it."""
    row = BookRow(
        scenario=scenario.name,
        events=len(truth.applied),
        expects_resync=scenario.expects_resync,
        expects_replay=scenario.expects_replay,
    )
    reset_books(stack)
    run = BookRun(scenario, opts, stack)
    create_topics(run)
    started = time.monotonic()
    first, final = truth.snapshot_id, truth.final.last_id
    fault_thread: threading.Thread | None = None

    def fault() -> None:
        assert scenario.fault is not None
        try:
            scenario.fault(run)
        except BaseException as exc:  # noqa: BLE001 - reported in the row
            run.fault_error = exc

    try:
        run.start_pipeline()
        deadline: float | None = None
        market_s = (truth.final.time_ms - truth.applied[0].time_ms) / 1000 / opts.speed
        while True:
            time.sleep(1.0)
            run.supervisor.watch()
            sent = run.sent_id()
            now = time.monotonic()
            progress = 0.0 if sent is None else (sent - first) / (final - first)
            if fault_thread is None and scenario.fault is not None and progress >= scenario.at:
                fault_thread = threading.Thread(target=fault, name=f"fault-{scenario.name}", daemon=True)
                fault_thread.start()
            fault_done = scenario.fault is None or (fault_thread is not None and not fault_thread.is_alive())
            if fault_done and run.stored_final(final):
                row.completed = True
                break
            if deadline is None and fault_done and sent == final:
                deadline = now + opts.drain_timeout_s
            if (deadline is not None and now > deadline) or now - started > 3 * market_s + opts.drain_timeout_s * 2:
                row.notes.append("the recording's last book was not stored in time")
                break
        if run.fault_error is not None:
            row.notes.append(f"fault failed: {type(run.fault_error).__name__}: {run.fault_error}")
    finally:
        run.supervisor.stop_all()
        harness.delete_topics(
            lambda: KafkaAdminClient(bootstrap_servers=stack.bootstrap.split(","), request_timeout_ms=10000),
            [run.topic, run.dlq],
        )
    row.seconds = round(time.monotonic() - started, 1)
    row.restarts = {k: v for k, v in run.supervisor.restarts.items() if v}
    ingest = lives(run.logs / "ingest.log", "metrics", ("book_resyncs", "book_syncs"))
    row.resyncs, row.syncs = ingest["book_resyncs"], ingest["book_syncs"]
    row.consumer_breaks = lives(run.logs / "consume_books.log", None, ("breaks",))["breaks"]
    row.replays = replays(run.logs / "consume_books.log")
    compare_books(run, truth, row)
    row.notes.extend(run.notes)
    return row


def _log_entries(log: Path) -> list[dict[str, Any]]:
    entries = []
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
    return entries


def lives(log: Path, key: str | None, names: tuple[str, ...]) -> dict[str, int]:
    """Counters of a process's metrics lines summed over its lives: each life's last value (a counter that goes
    down marks a new life). ``key``: where the line holds its metrics (None: at the top level)."""
    totals = dict.fromkeys(names, 0)
    last: dict[str, int] | None = None
    for entry in _log_entries(log):
        figures = entry.get(key) if key else entry
        if not isinstance(figures, dict) or not all(n in figures for n in names):
            continue
        now = {n: int(figures[n]) for n in names}
        if last is not None and any(now[n] < last[n] for n in names):
            for n in names:
                totals[n] += last[n]
        last = now
    if last is not None:
        for n in names:
            totals[n] += last[n]
    return totals


def replays(log: Path) -> list[tuple[int, int]]:
    """``(replay_from, committed)`` of each partition assignment the consumer logged with a committed offset."""
    found = []
    for entry in _log_entries(log):
        if entry.get("message") == "books partition assigned" and entry.get("committed") is not None:
            start = entry.get("replay_from")
            found.append((int(entry["committed"] if start is None else start), int(entry["committed"])))
    return found


def _levels(rows: list[list[str]]) -> list[booktruth.Level]:
    return [(Decimal(p), Decimal(q)) for p, q in rows]


def compare_books(run: BookRun, truth: booktruth.BookTruth, row: BookRow) -> None:
    """Fill ``row`` from the stored books against the truth."""
    market = (EXCHANGE, SYMBOL)
    columns = ", ".join(METRIC_COLUMNS)
    with psycopg.connect(run.stack.database_url) as conn:
        snapshots = conn.execute(
            "SELECT (extract(epoch FROM window_start) * 1000)::bigint, t, last_id, valid, bids, asks"
            " FROM books_booksnapshot WHERE exchange = %s AND symbol = %s ORDER BY window_start",
            market,
        ).fetchall()
        metrics = conn.execute(
            f"SELECT (extract(epoch FROM second) * 1000)::bigint, t, last_id, valid, {columns}"
            " FROM books_bookmetric WHERE exchange = %s AND symbol = %s ORDER BY second",
            market,
        ).fetchall()
        others = conn.execute(
            "SELECT (SELECT count(*) FROM books_booksnapshot WHERE NOT (exchange = %(e)s AND symbol = %(s)s))"
            " + (SELECT count(*) FROM books_bookmetric WHERE NOT (exchange = %(e)s AND symbol = %(s)s))",
            {"e": EXCHANGE, "s": SYMBOL},
        ).fetchone()
    row.duplicates += int(others[0]) if others else 0  # rows of a market nobody published
    check_rows(snapshots, metrics, truth, run.opts.store_every_s, run.opts.depth_levels, row)


def check_rows(
    snapshots: list[tuple[Any, ...]],
    metrics: list[tuple[Any, ...]],
    truth: booktruth.BookTruth,
    every_s: int,
    depth: int,
    row: BookRow,
) -> None:
    """Fill ``row`` from the stored rows, in time order: ``snapshots`` as ``(window start ms, t, last_id, valid,
    bids, asks)``, ``metrics`` as ``(second ms, t, last_id, valid, *METRIC_COLUMNS)``."""
    row.snapshots, row.metrics = len(snapshots), len(metrics)
    row.duplicates += len(snapshots) - len({s[0] for s in snapshots}) + len(metrics) - len({m[0] for m in metrics})
    ids = {r[2] for r in (*snapshots, *metrics) if r[3] and r[2] is not None}
    states = truth.states(ids | {truth.final.last_id}, depth)
    windows = truth.windows(every_s * 1000)
    seconds = truth.windows(1000)
    row.windows_expected = len(windows) + len(seconds)

    def same_snapshot(s: tuple[Any, ...]) -> bool:
        start, t, last_id, _valid, bids, asks = s
        want = states.get(last_id)
        return (
            want is not None
            and t == want.time_ms
            and start == t - t % (every_s * 1000)
            and (_levels(bids), _levels(asks)) == (want.bids, want.asks)
        )

    def same_metric(m: tuple[Any, ...]) -> bool:
        start, t, last_id, _valid, *values = m
        want = states.get(last_id)
        return (
            want is not None
            and t == want.time_ms
            and start == t - t % 1000
            and tuple(values) == tuple(getattr(want, c) for c in METRIC_COLUMNS)
        )

    for s in snapshots:
        if s[3]:
            row.snapshots_valid += 1
            row.snapshots_wrong += not same_snapshot(s)
        else:
            row.invalid_not_empty += bool(s[4] or s[5])
    for m in metrics:
        if m[3]:
            row.metrics_valid += 1
            row.metrics_wrong += not same_metric(m)
        else:
            row.invalid_not_empty += any(v is not None for v in m[4:])
    stored_windows = {s[0]: s[2] for s in snapshots if s[3]}
    stored_seconds = {m[0]: m[2] for m in metrics if m[3]}
    row.windows_missing = sum(1 for w, u in windows.items() if stored_windows.get(w) != u) + sum(
        1 for w, u in seconds.items() if stored_seconds.get(w) != u
    )
    final = truth.final
    row.final_ok = bool(
        snapshots
        and metrics
        and snapshots[-1][3]
        and metrics[-1][3]
        and snapshots[-1][2] == metrics[-1][2] == final.last_id
        and snapshots[-1][1] == metrics[-1][1] == final.time_ms
        and same_snapshot(snapshots[-1])
        and same_metric(metrics[-1])
    )
    if not row.final_ok:
        row.notes.append(f"last snapshot stored: {snapshots[-1][:4] if snapshots else None}")


COLUMNS = (
    "scenario",
    "events",
    "snapshots valid/stored",
    "metrics valid/stored",
    "valid but wrong",
    "not valid but not empty",
    "windows lost",
    "dup",
    "final book",
    "resyncs",
    "consumer breaks",
    "consumer replays (from..committed)",
    "restarts",
    "s",
)


def table(rows: list[BookRow]) -> str:
    """One line per book scenario (the books table of docs/RELIABILITY.md)."""
    lines = ["| " + " | ".join(COLUMNS) + " | ok |", "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        cells = [
            r.scenario,
            f"{r.events:,}",
            f"{r.snapshots_valid}/{r.snapshots}",
            f"{r.metrics_valid}/{r.metrics}",
            str(r.snapshots_wrong + r.metrics_wrong),
            str(r.invalid_not_empty),
            f"{r.windows_missing} of {r.windows_expected}",
            str(r.duplicates),
            "equal" if r.final_ok else "WRONG",
            str(r.resyncs),
            str(r.consumer_breaks),
            ", ".join(f"{a}..{b}" for a, b in r.replays) or "-",
            ", ".join(f"{k} {v}" for k, v in sorted(r.restarts.items())) or "-",
            f"{r.seconds:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + f" | {'yes' if r.ok else 'NO'} |")
    return "\n".join(lines)
