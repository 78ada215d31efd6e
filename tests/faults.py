"""Fault injection on the local stack, for the outage tests and the chaos suite: stop, freeze and restart Kafka.

Only the stack of this test run is touched: the one ``scripts/stack_env.sh`` describes through ``STACK_DIR``
(default ``.stack/`` in the repository) and ``KAFKA_BOOTSTRAP_SERVERS``. Restarting goes through
``scripts/stack.sh up`` (idempotent: it starts only what is down, and waits until the broker answers).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def stack_dir() -> Path:
    """Where this run's stack keeps its data and pid files."""
    return Path(os.environ.get("STACK_DIR") or ROOT / ".stack")


def kafka_pid() -> int:
    """The pid of this stack's Kafka broker (``$STACK_DIR/kafka/kafka.pid``); fails when it is not running."""
    path = stack_dir() / "kafka" / "kafka.pid"
    pid = int(path.read_text().strip())
    os.kill(pid, 0)  # raises ProcessLookupError when the broker is gone
    return pid


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def kafka_address() -> tuple[str, int]:
    """Host and port of the first bootstrap server (this stack's broker)."""
    host, _, port = settings.KAFKA_BOOTSTRAP_SERVERS[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def stop_kafka(timeout: float = 60.0) -> None:
    """Kill the broker (SIGKILL: a crash, no clean shutdown) and wait until its port refuses connections."""
    pid = kafka_pid()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka (pid {pid}) still runs {timeout:.0f} s after SIGKILL")
        time.sleep(0.1)
    host, port = kafka_address()
    while _port_open(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host}:{port} still accepts connections after Kafka was killed")
        time.sleep(0.1)


def freeze_kafka() -> int:
    """SIGSTOP the broker: connections stay open but nothing answers (a hung broker). Returns its pid."""
    pid = kafka_pid()
    os.kill(pid, signal.SIGSTOP)
    return pid


def thaw_kafka(pid: int) -> None:
    """SIGCONT a broker frozen by :func:`freeze_kafka`."""
    os.kill(pid, signal.SIGCONT)


class FrozenKafka:
    """Freezes this stack's broker (SIGSTOP) and thaws it; use it from a fixture that thaws at teardown."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def freeze(self) -> None:
        """Freeze the broker (idempotent per call: each call is undone by :meth:`thaw`)."""
        self.pids.append(freeze_kafka())

    def thaw(self) -> None:
        """Thaw every freeze of this object."""
        while self.pids:
            thaw_kafka(self.pids.pop())


def start_kafka(timeout: float = 240.0) -> None:
    """``scripts/stack.sh up``: restarts the broker (and anything else down) and waits until it answers."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "stack.sh"), "up"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/stack.sh up failed ({result.returncode}):\n{result.stderr[-3000:]}")


@contextmanager
def kafka_down() -> Iterator[None]:
    """Kafka is dead inside the block and back (answering) after it, even when the block fails."""
    stop_kafka()
    try:
        yield
    finally:
        start_kafka()
