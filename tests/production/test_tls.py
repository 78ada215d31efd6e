"""The pipeline over TLS only: ``scripts/stack_env.sh N --tls`` + ``scripts/stack.sh up`` on a stack of its own
(number 14, ``TLS_TEST_STACK`` moves it: not the suite's, nor the chaos tests' 11-13, nor the workers' 20 and up).

Its servers accept TLS only (Kafka SASL_SSL with SCRAM-SHA-512, PostgreSQL hostssl lines with
``sslmode=verify-full``, Redis on a TLS port with a password), and every process here gets nothing but the settings
``stack_env.sh --tls`` prints. The module shows that

- the whole pipeline runs over it: simulator -> ``ingest`` -> Kafka -> ``consume_trades`` -> PostgreSQL -> Celery ->
  Channels, and the health page's reads see every server;
- a plaintext client is refused by each server;
- a wrong CA, a wrong password and a wrong host name stop each command at start (``ingest``, ``consume_trades``, a
  Celery worker, ``check_stack``) with one line naming the setting, and no traceback;
- none of the stack's passwords (nor the wrong ones) appears in any output of those runs, nor in the servers' logs.

The wrong host name is a real one: a forwarder on 127.0.0.2 passes the bytes to the servers on 127.0.0.1, whose
certificate names 127.0.0.1 and localhost only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from chaos.harness import Stack, stack_environment
from tests.conftest import ROOT, manage, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WRONG_HOST = "127.0.0.2"
SYMBOL = "BTCUSDT"
# The settings that hold a Redis URL (the stack gives them all the same one).
REDIS_SETTINGS = ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CHANNEL_LAYER_URL", "CACHE_URL")
CELERY = [sys.executable, "-m", "celery", "-A", "cryptoproject"]


@dataclass
class TlsStack:
    """The running TLS stack: its environment (as ``stack_env.sh --tls`` printed it), passwords, logs written."""

    env: dict[str, str]
    secrets: dict[str, str]
    logs: list[Path]

    @property
    def ca(self) -> str:
        """The stack's CA file."""
        return self.env["KAFKA_SSL_CAFILE"]

    def app_env(self, **overrides: str) -> dict[str, str]:
        """The environment of a pipeline process: the stack's client settings, production mode, its own topics."""
        env = dict(self.env)
        env.update(
            DJANGO_DEBUG="false",
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            DJANGO_ALLOWED_HOSTS="127.0.0.1",
            DJANGO_SETTINGS_MODULE="cryptoproject.settings",
            DOTENV_FILE="",
            LOG_LEVEL="INFO",
            PYTHONPATH=str(ROOT),
        )
        env.update(overrides)
        return env


def read_secrets(stack_dir: Path) -> dict[str, str]:
    """The passwords ``stack_env.sh --tls`` generated for the stack (``tls/secrets.env``)."""
    lines = (stack_dir / "tls" / "secrets.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    """TLS stack 14 (``TLS_TEST_STACK``) started by the scripts, its database migrated over TLS; stopped after."""
    env = stack_environment(int(os.environ.get("TLS_TEST_STACK", "14")), tls=True)
    stack = Stack(env)
    logs: list[Path] = []
    try:
        stack.run("up")
        stack_ = TlsStack(env, read_secrets(Path(env["STACK_DIR"])), logs)
        log = tmp_path_factory.mktemp("tls") / "migrate.log"
        with log.open("wb") as out:
            done = subprocess.run(
                manage("migrate", "--noinput", "-v", "0"), cwd=ROOT, env=stack_.app_env(), stdout=out, stderr=out
            )
        logs.append(log)
        assert done.returncode == 0, log.read_text()
        yield stack_
    finally:
        stack.run("down")


def test_the_stack_files_keep_their_secrets_private(tls_stack: TlsStack) -> None:
    stack_dir = Path(tls_stack.env["STACK_DIR"])
    assert (stack_dir / "tls" / "secrets.env").stat().st_mode & 0o777 == 0o600
    assert (stack_dir / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (stack_dir / "tls").stat().st_mode & 0o777 == 0o700
    # The files that must hold a password (the broker's own login, Redis's requirepass) are the owner's only.
    assert (stack_dir / "kafka" / "server.properties").stat().st_mode & 0o077 == 0
    assert (stack_dir / "redis" / "redis-tls.conf").stat().st_mode & 0o077 == 0
    assert set(tls_stack.secrets) == {"DB_PASSWORD", "REDIS_PASSWORD", "KAFKA_PASSWORD", "KAFKA_BROKER_PASSWORD"}
    assert all(len(value) >= 32 for value in tls_stack.secrets.values())
    assert tls_stack.env["DATABASE_URL"].endswith(f"?sslmode=verify-full&sslrootcert={tls_stack.ca}")
    assert all(tls_stack.env[name].startswith("rediss://") for name in REDIS_SETTINGS)


# --------------------------------------------------------------------------------------------- plaintext refused
def test_kafka_refuses_plaintext_and_tls_without_sasl(tls_stack: TlsStack) -> None:
    bootstrap = tls_stack.env["KAFKA_BOOTSTRAP_SERVERS"]
    good = {
        "bootstrap_servers": bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": tls_stack.env["KAFKA_SASL_USERNAME"],
        "sasl_plain_password": tls_stack.env["KAFKA_SASL_PASSWORD"],
        "ssl_cafile": tls_stack.ca,
    }
    admin = KafkaAdminClient(**good, bootstrap_timeout_ms=10_000)
    try:
        assert admin.describe_cluster()["brokers"]  # the same broker answers the stack's settings
    finally:
        admin.close()
    plaintext = {"bootstrap_servers": bootstrap, "security_protocol": "PLAINTEXT"}
    tls_only = {"bootstrap_servers": bootstrap, "security_protocol": "SSL", "ssl_cafile": tls_stack.ca}
    for options in (plaintext, tls_only):
        with pytest.raises(KafkaError):
            KafkaAdminClient(**options, bootstrap_timeout_ms=3000).close()


def test_postgres_refuses_a_connection_without_tls(tls_stack: TlsStack) -> None:
    url = tls_stack.env["DATABASE_URL"]
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.execute("SHOW ssl").fetchone() == ("on",)
    plain = url.split("?")[0] + "?sslmode=disable"
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry.*no encryption"):
        psycopg.connect(plain, connect_timeout=5)


def test_redis_refuses_a_connection_without_tls(tls_stack: TlsStack) -> None:
    url = tls_stack.env["REDIS_URL"]
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        assert client.ping()
        assert client.config_get("port") == {"port": "0"}  # no plaintext port at all
    finally:
        client.close()
    plain = redis.Redis.from_url(url.replace("rediss://", "redis://").split("?")[0], socket_timeout=5)
    try:
        with pytest.raises(redis.ConnectionError):
            plain.ping()
    finally:
        plain.close()


# --------------------------------------------------------------------------------------------- the pipeline
def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A child process with its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_until(condition: Any, timeout: float, what: str, logs: list[Path]) -> Any:
    """:func:`tests.conftest.wait_for`, showing the children's last output when it times out."""
    try:
        return wait_for(condition, timeout=timeout, interval=0.2, what=what)
    except pytest.fail.Exception:
        for log in logs:
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")  # shown with the failure
        raise


async def channel_pushes(url: str, group: str, kinds: set[str], timeout: float) -> set[str]:
    """The kinds of push (``trades``, ``candles``, ...) the channel layer delivers to ``group`` within ``timeout``,
    read over TLS like the dashboard's sockets; returns once every kind of ``kinds`` was seen."""
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[{"address": url, "socket_timeout": 15}], prefix="asgi")
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while not kinds <= seen and time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            seen.add(str(message.get("payload", {}).get("kind")))
    finally:
        await layer.group_discard(group, channel)
        await layer.close_pools()
    return seen


def stored(database_url: str) -> tuple[int, int]:
    """(trades, 1m candles) stored for the live market, read over TLS."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM analytics_trade WHERE exchange = 'binance' AND symbol = %(s)s),"
            " (SELECT count(*) FROM analytics_candle WHERE exchange = 'binance' AND symbol = %(s)s"
            "   AND interval = '1m')",
            {"s": SYMBOL},
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_the_whole_pipeline_runs_over_tls(tls_stack: TlsStack, tmp_path: Path) -> None:
    tag = unique("tls")
    env = tls_stack.app_env(
        KAFKA_TRADES_TOPIC=f"{tag}.trades", KAFKA_DLQ_TOPIC=f"{tag}.dlq", KAFKA_CONSUMER_GROUP=f"{tag}-group"
    )
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("TRUNCATE analytics_trade, analytics_candle CASCADE")
    topics = subprocess.run(manage("create_topics"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert topics.returncode == 0, topics.stderr
    children: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"{name}.log" for name in ("worker", "consume", "simulator", "ingest")]
    tls_stack.logs.extend(logs)
    worker_log, consume_log, simulator_log, ingest_log = logs
    try:
        worker = [*CELERY, "worker", "-Q", "analytics,alerts,default", "-c", "1", "-n", f"{tag}@%h"]
        children.append(start([*worker, "--without-gossip", "--without-mingle", "-l", "INFO"], env, worker_log))
        children.append(start(manage("consume_trades", "--batch-ms", "100"), env, consume_log))
        simulator = start(
            manage(
                "simulate_exchange",
                *["--exchange", "binance", "--port", "0", "--synthetic", "--rate", "100"],
                *["--symbols", SYMBOL, "--seed", "7"],
            ),
            env,
            simulator_log,
        )
        children.append(simulator)
        found = wait_until(
            lambda: re.search(r"listening on ws://[\d.]+:(\d+)", simulator_log.read_text()),
            60,
            "the simulator to listen",
            logs,
        )
        port = found.group(1)
        ingest_env = dict(env, BINANCE_WS_URL=f"ws://127.0.0.1:{port}", BINANCE_REST_URL=f"http://127.0.0.1:{port}")
        children.append(
            start(
                manage(
                    *["ingest", "--exchange", "binance", "--symbols", SYMBOL.lower()],
                    *["--metrics-port", "0", "--metrics-interval", "1"],
                ),
                ingest_env,
                ingest_log,
            )
        )

        # Trades and candles in PostgreSQL: ingest -> Kafka -> consume_trades -> PostgreSQL -> Celery (candles).
        wait_until(lambda: stored(env["DATABASE_URL"])[0] >= 200, 180, "200 trades stored over TLS", logs)
        wait_until(lambda: stored(env["DATABASE_URL"])[1] >= 1, 120, "a 1m candle from the Celery worker", logs)
        # Channels: the consumer's live tape and the worker's candle pushes reach the market's group.
        kinds = asyncio.run(
            channel_pushes(env["CHANNEL_LAYER_URL"], "market.binance.btcusdt", {"trades", "candles"}, 90)
        )
        assert {"trades", "candles"} <= kinds, kinds

        # The health page's reads (Kafka lag and DLQ, ingest and consumer snapshots, Celery queues) and the web
        # nodes' cache, over TLS.
        health = subprocess.run(
            [
                sys.executable,
                "-c",
                "import django, json; django.setup(); from django.core.cache import cache; "
                "from dashboard.health import pipeline_health; cache.set('tls-check', {'ok': 1}, 60); "
                "print(json.dumps({**pipeline_health(), 'cache': cache.get('tls-check')}, default=str))",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert health.returncode == 0, health.stderr
        body = json.loads(health.stdout.strip().splitlines()[-1])
        assert body["errors"] == [], body["errors"]
        assert body["kafka"].get("error") is None, body["kafka"]
        assert body["dlq"].get("error") is None, body["dlq"]
        assert "binance" in body["ingest"]["exchanges"], body["ingest"]
        assert body["consumers"], body
        assert body["queues"] is not None
        assert body["cache"] == {"ok": 1}  # Django's cache (the web nodes' throttles) over rediss:// too
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
    assert "Traceback" not in ingest_log.read_text() + consume_log.read_text()


# --------------------------------------------------------------------------------------------- wrong settings
class Forwarder:
    """Listens on ``WRONG_HOST`` at the given ports and passes the bytes to 127.0.0.1 at the same ports: the servers
    answer, under a name their certificate does not cover."""

    def __init__(self, ports: list[int]) -> None:
        self.servers: list[socket.socket] = []
        for port in ports:
            server = socket.socket()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((WRONG_HOST, port))
            server.listen(16)
            self.servers.append(server)
            threading.Thread(target=self._accept, args=(server, port), daemon=True).start()

    def _accept(self, server: socket.socket, port: int) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop listening."""
        for server in self.servers:
            server.close()


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA of its own, which signed nothing the stack serves."""
    folder = tmp_path_factory.mktemp("wrong-ca")
    subprocess.run(
        [
            *["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=another CA"],
            *["-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.pem")],
        ],
        check=True,
        capture_output=True,
    )
    return str(folder / "ca.pem")


def faulty_env(
    stack: TlsStack, servers: tuple[str, ...], kind: str, wrong_ca: str, wrong_password: str
) -> dict[str, str]:
    """The stack's settings with the CA, password or host name (``kind``) of each of ``servers`` (kafka, postgres,
    redis) wrong."""
    env = stack.app_env()
    names = {
        "kafka": ["KAFKA_SSL_CAFILE", "KAFKA_SASL_PASSWORD", "KAFKA_BOOTSTRAP_SERVERS"],
        "postgres": ["DATABASE_URL"],
        "redis": list(REDIS_SETTINGS),
    }
    password = {
        "kafka": stack.secrets["KAFKA_PASSWORD"],
        "postgres": stack.secrets["DB_PASSWORD"],
        "redis": stack.secrets["REDIS_PASSWORD"],
    }
    for server in servers:
        for name in names[server]:
            if kind == "ca":
                env[name] = env[name].replace(stack.ca, wrong_ca)
            elif kind == "password":
                env[name] = env[name].replace(password[server], wrong_password)
            else:
                env[name] = env[name].replace("127.0.0.1", WRONG_HOST)
        assert any(env[name] != stack.env[name] for name in names[server])
    return env


# The setting each (server, kind) must be named by; Redis's is the URL of whichever Redis setting the command
# checks first (they are all the same URL here).
EXPECTED = {
    ("kafka", "ca"): r"KAFKA_SSL_CAFILE: ",
    ("kafka", "password"): r"KAFKA_SASL_PASSWORD: ",
    ("kafka", "host"): r"KAFKA_BOOTSTRAP_SERVERS: .*not valid for the host name 127\.0\.0\.2",
    ("postgres", "ca"): r"DATABASE_URL \(sslrootcert\): ",
    ("postgres", "password"): r"DATABASE_URL \(password\): ",
    ("postgres", "host"): r"DATABASE_URL \(host\): ",
    ("redis", "ca"): r"(REDIS_URL|CELERY_BROKER_URL) \(ssl_ca_certs\): ",
    ("redis", "password"): r"(REDIS_URL|CELERY_BROKER_URL) \(password\): ",
    ("redis", "host"): r"(REDIS_URL|CELERY_BROKER_URL) \(host\): .*not valid for the host name 127\.0\.0\.2",
}
# Each command and the servers it reaches at start.
COMMANDS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "ingest": (
        manage("ingest", "--exchange", "binance", "--symbols", "btcusdt", "--metrics-port", "0"),
        ("kafka", "redis"),
    ),
    "consume_trades": (manage("consume_trades"), ("postgres", "kafka", "redis")),
    "celery-worker": (
        [*CELERY, "worker", "-Q", "default", "-c", "1", "-l", "INFO"],
        ("redis", "postgres"),
    ),
}


@pytest.mark.parametrize("kind", ["ca", "password", "host"])
def test_a_wrong_setting_stops_each_command_at_start_naming_it(
    tls_stack: TlsStack, wrong_ca: str, kind: str, tmp_path: Path
) -> None:
    wrong_password = secrets.token_hex(24)
    env_ports = [int(tls_stack.env[name]) for name in ("STACK_KAFKA_PORT", "STACK_PG_PORT", "STACK_REDIS_PORT")]
    forwarder = Forwarder(env_ports) if kind == "host" else None
    runs: list[tuple[str, str, list[str], dict[str, str]]] = []
    for command, (argv, servers) in COMMANDS.items():
        for server in servers:
            runs.append((command, server, argv, faulty_env(tls_stack, (server,), kind, wrong_ca, wrong_password)))
    # check_stack with every server wrong at once: it checks all three and names each.
    every = faulty_env(tls_stack, ("kafka", "postgres", "redis"), kind, wrong_ca, wrong_password)
    runs.append(("check_stack", "all", manage("check_stack", "--timeout", "10"), every))

    def run(item: tuple[str, str, list[str], dict[str, str]]) -> tuple[str, str, int, str]:
        command, server, argv, env = item
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        return command, server, done.returncode, done.stdout + done.stderr

    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(run, runs))
    finally:
        if forwarder is not None:
            forwarder.close()
    for command, server, returncode, output in results:
        log = tmp_path / f"{command}-{server}.log"
        log.write_text(output)
        tls_stack.logs.append(log)
        assert returncode != 0, f"{command} with a wrong {kind} for {server} did not stop:\n{output}"
        assert "Traceback" not in output, output
        assert wrong_password not in output
        lines = [line for line in output.splitlines() if line.strip()]
        if command == "check_stack":
            for each in ("kafka", "postgres", "redis"):
                assert any(re.search(EXPECTED[(each, kind)], line) for line in lines), (each, output)
        else:
            # The last line is the one message, naming the setting.
            assert re.search(EXPECTED[(server, kind)], lines[-1]), (command, server, output)


# --------------------------------------------------------------------------------------------- secrets
def test_no_secret_appears_in_any_log(tls_stack: TlsStack) -> None:
    """Every output of this module's runs, and the servers' own logs, without any of the stack's passwords.

    Runs last in the module (pytest keeps the file's order): the logs of the tests above are collected by then.
    """
    stack_dir = Path(tls_stack.env["STACK_DIR"])
    server_logs = [p for p in stack_dir.rglob("*") if p.is_file() and p.suffix in {".log", ".out"}]
    logs = tls_stack.logs + server_logs
    assert len(tls_stack.logs) >= 5, tls_stack.logs  # the pipeline's and the wrong settings' runs were collected
    for log in logs:
        text = log.read_text(errors="replace")
        for name, value in tls_stack.secrets.items():
            assert value not in text, f"{name} appears in {log}"
