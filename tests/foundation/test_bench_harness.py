"""benchmarks/harness.py, the helpers the benchmarks and chaos share, against real processes, sockets and Kafka."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from benchmarks import harness
from cryptoproject.kafka import TopicSpec, admin_client, ensure_topics
from tests.conftest import unique


def test_a_process_tree_holds_the_child_and_its_figures_come_from_proc() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert child.pid in harness.process_tree(os.getpid())
        assert harness.peak_rss_mb(child.pid) > 0
        assert harness.cpu_seconds(child.pid) is not None
    finally:
        child.communicate(b"")
    # Gone: no figures, no error.
    assert harness.process_tree(child.pid) == [child.pid]
    assert harness.peak_rss_mb(child.pid) == 0.0
    assert harness.cpu_seconds(child.pid) is None


def test_wait_port_returns_once_a_port_listens_and_fails_when_none_does() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert harness.port_open(port)
        harness.wait_port(port, timeout=5)
    closed = harness.free_port()
    with pytest.raises(RuntimeError, match=f"did not listen on port {closed} within 0 s"):
        harness.wait_port(closed, timeout=0.3)


def test_wait_listening_reads_the_port_from_the_log_or_says_the_simulator_exited(tmp_path: Path) -> None:
    log = tmp_path / "simulator.log"
    log.write_text("starting\nlistening on ws://127.0.0.1:45678\n")
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert harness.wait_listening(log, alive, timeout=5) == 45678
    finally:
        alive.communicate(b"")
    log.write_text("error: no such file\n")
    with pytest.raises(SystemExit, match="the simulator exited:\nerror: no such file"):
        harness.wait_listening(log, alive, timeout=5)


def test_delete_topics_deletes_them_and_a_failing_cleanup_raises_nothing() -> None:
    names = [unique("test.harness"), unique("test.harness")]
    ensure_topics([TopicSpec(name, 1, {}) for name in names])
    harness.delete_topics(admin_client, names)
    admin = admin_client()
    try:
        # The broker's metadata may list a deleted topic for a moment: poll, with a deadline.
        deadline = time.monotonic() + 30
        while set(names) & set(admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not set(names) & set(admin.list_topics())
    finally:
        admin.close()

    def unreachable() -> KafkaAdminClient:
        raise OSError("no broker")

    harness.delete_topics(unreachable, names)


def test_manage_runs_this_projects_manage_py_with_this_interpreter() -> None:
    assert harness.manage("migrate", "--check") == [
        sys.executable,
        str(harness.ROOT / "manage.py"),
        "migrate",
        "--check",
    ]
    assert (harness.ROOT / "manage.py").is_file()
