"""Shared fixtures. Tests that touch Kafka, PostgreSQL, Redis, Celery or Channels use the real servers that
``make services`` starts; each test gets its own topics, consumer groups and Celery queues, so runs never
see each other's data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kombu.exceptions
import pytest
import redis
from channels.layers import channel_layers
from django.conf import settings
from hypothesis import settings as hypothesis_settings

from cryptoproject.kafka import TopicSpec, admin_client, ensure_topics
from cryptoproject.queues import CeleryQueue
from tests import durations

# CI (which sets CI=true) draws the same examples on every run, so a submission's result does not depend on luck;
# developers' runs keep drawing new ones, which is where fuzzing finds things (a failure it finds becomes an
# explicit test).
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"


def _answers_ping(app: Any) -> bool:
    """Whether a Celery worker answers a ping; a broker connection that fails counts as not yet.

    The process pools its broker connections, and a test that restarts this stack's Redis (test_security's
    ``stack_redis``) leaves pooled ones that fail once with "Connection closed by server"; the next ping reconnects.
    """
    try:
        return bool(app.control.ping(timeout=0.5))
    except (redis.RedisError, kombu.exceptions.OperationalError, OSError):
        return False


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the longest modules first (tests/durations.py); a serial run keeps pytest-django's order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items[:] = durations.longest_first(items, durations.load())


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or condition}")
        time.sleep(interval)


def unique(prefix: str) -> str:
    """A name no other test run uses (Kafka topics and groups, Celery queues)."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


@dataclass
class KafkaTopics:
    """Per-test topic and group names, already created and set in ``settings``."""

    trades: str
    dlq: str
    group: str


@pytest.fixture(autouse=True)
def ingest_journal_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A spill journal directory per test (``INGEST_JOURNAL_DIR``, passed on to children by :func:`subprocess_env`):
    what one test's ingest leaves on disk is never replayed into the next test's topics."""
    previous = settings.INGEST_JOURNAL_DIR
    settings.INGEST_JOURNAL_DIR = path = tmp_path_factory.mktemp("journal")
    yield path
    settings.INGEST_JOURNAL_DIR = previous


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> Iterator[None]:
    """Each test gets channel layer instances of its own.

    channels caches one layer per process, and channels_redis keeps per-channel ``asyncio.Lock``s on it. Each async
    test runs on an event loop of its own, so a receive lock a previous test's consumer left held when its loop closed
    made the next test's receive fail with "bound to a different event loop" (seen once in a full run).
    """
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def kafka_topics(settings: Any) -> Iterator[KafkaTopics]:
    """Fresh ``market.trades``/``dlq`` stand-ins (6 and 1 partitions) and consumer group, deleted afterwards."""
    names = KafkaTopics(trades=unique("test.trades"), dlq=unique("test.dlq"), group=unique("test-group"))
    ensure_topics([TopicSpec(names.trades, 6, {}), TopicSpec(names.dlq, 1, {})])
    settings.KAFKA_TRADES_TOPIC = names.trades
    settings.KAFKA_DLQ_TOPIC = names.dlq
    settings.KAFKA_CONSUMER_GROUP = names.group
    yield names
    admin = admin_client()
    try:
        admin.delete_topics([names.trades, names.dlq])
    except Exception:  # noqa: BLE001 - cleanup is best effort; names are unique anyway
        pass
    finally:
        admin.close()


def subprocess_env(**overrides: str) -> dict[str, str]:
    """Environment for a child process (manage.py command, Celery worker) that sees this test's database.

    pytest-django points the connection at the test database only inside this process: children get a
    ``DATABASE_URL`` naming it explicitly.
    """
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["DJANGO_SETTINGS_MODULE"] = "cryptoproject.settings"
    # Per-test topics and group (the kafka_topics fixture overrides them in this process's settings).
    env["KAFKA_TRADES_TOPIC"] = settings.KAFKA_TRADES_TOPIC
    env["KAFKA_DLQ_TOPIC"] = settings.KAFKA_DLQ_TOPIC
    env["KAFKA_CONSUMER_GROUP"] = settings.KAFKA_CONSUMER_GROUP
    env["INGEST_JOURNAL_DIR"] = str(settings.INGEST_JOURNAL_DIR)
    env["PYTHONPATH"] = str(ROOT)
    env.update(overrides)
    return env


@dataclass
class ChildProcess:
    """A running child (worker, command) with its output kept for assertions and failures."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything the child printed so far."""
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the child and wait for it; SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., ChildProcess]]:
    """Start child processes (``spawn([...], env=...)``); every one still running is stopped at teardown."""
    children: list[ChildProcess] = []

    def _spawn(args: list[str], env: dict[str, str] | None = None, name: str = "child") -> ChildProcess:
        log = tmp_path / f"{name}-{len(children)}.log"
        handle = log.open("wb")
        proc = subprocess.Popen(args, cwd=ROOT, env=env or subprocess_env(), stdout=handle, stderr=subprocess.STDOUT)
        child = ChildProcess(proc, log)
        children.append(child)
        return child

    yield _spawn
    for child in children:
        child.stop()


def manage(*args: str) -> list[str]:
    """argv for ``python manage.py <args>`` with this interpreter."""
    return [sys.executable, str(ROOT / "manage.py"), *args]


@pytest.fixture
def celery_worker_process(spawn: Callable[..., ChildProcess]) -> Iterator[ChildProcess]:
    """A real Celery worker process on the Redis broker, consuming every project queue (ml too), using the test DB.

    Tests that need it must use ``@pytest.mark.django_db(transaction=True)`` so the worker sees their rows.
    """
    from cryptoproject.celery import app

    app.control.purge()
    node = f"test-{uuid.uuid4().hex[:8]}@%h"
    child = spawn(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cryptoproject",
            "worker",
            "-Q",
            ",".join(CeleryQueue),
            "-c",
            "2",
            "-n",
            node,
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        name="celery",
    )
    wait_for(
        lambda: child.proc.poll() is not None or _answers_ping(app),
        timeout=60,
        what="the Celery worker to answer a ping",
    )
    assert child.proc.poll() is None, child.output()
    yield child
    child.stop()
