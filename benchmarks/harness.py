"""The helpers every benchmark and the chaos harness share: starting ``manage.py`` commands, waiting for a port,
reading a process's CPU and peak memory from /proc, dropping a run's topics.

It imports nothing of the project at module level (Django is set up only by :func:`setup_django`), so that
``chaos``, which observes the pipeline from outside with plain clients, can use it too.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kafka import KafkaAdminClient

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on ws://[0-9.]+:(\d+)")


def setup_django() -> None:
    """Configure Django in this process (the project's settings unless ``DJANGO_SETTINGS_MODULE`` says otherwise)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptoproject.settings")
    import django

    django.setup()


def manage(*args: str) -> list[str]:
    """argv for ``manage.py <args>`` with this interpreter."""
    return [sys.executable, str(ROOT / "manage.py"), *args]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, timeout: float) -> None:
    """Return once the simulator (or anything) listens on ``port``; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the simulator did not listen on port {port} within {timeout:.0f} s")


def wait_listening(log: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """The port a ``simulate_exchange --port 0`` prints in ``log`` ("listening on ws://HOST:PORT").

    SystemExit with the log's tail when the simulator exits first, or when it says nothing within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        if proc.poll() is not None:
            raise SystemExit(f"the simulator exited:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    raise SystemExit("the simulator did not start listening")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Celery's pool children); processes gone meanwhile are skipped."""
    found = [pid]
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
                    found.extend(process_tree(int(child)))
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (from /proc/<pid>/stat); None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_report(report: dict[str, object], key_width: int = 30) -> None:
    """Print a benchmark's figures, one per line, a nested dict's under its key (indented)."""
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"  {key}")
            for k, v in value.items():
                print(f"    {k:<28} {v}")
        else:
            print(f"  {key:<{key_width}} {value}")


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of one process in MB; 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def delete_topics(connect: Callable[[], KafkaAdminClient], names: Iterable[str]) -> None:
    """Delete a run's topics through the admin client ``connect`` opens; best effort (a run's topic names are
    unique, so a leftover harms nothing, and a cleanup must not hide the run's own result or error)."""
    with contextlib.suppress(Exception):
        admin = connect()
        try:
            admin.delete_topics(list(names))
        finally:
            admin.close()
