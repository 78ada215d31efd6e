"""scripts/stack.sh on this checkout's running stack, with the PATH of cron or of ``su`` without ``-``.

Such a PATH lacks /usr/sbin, where ``runuser`` lives; as root the script needs it for every PostgreSQL check. It once
took "cannot check" for "down", reported a running PostgreSQL as down and began to initialise a second cluster.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = Path(os.environ.get("STACK_DIR", ROOT / ".stack"))
PORT = os.environ.get("STACK_PG_PORT", "55432")
# cron's PATH: no /usr/sbin, no /sbin.
CRON_ENV = {**os.environ, "PATH": "/usr/bin:/bin"}

pytestmark = pytest.mark.skipif(
    not (STACK / "postgres" / "PG_VERSION").exists(),
    reason=f"this checkout's stack ({STACK}) has no PostgreSQL cluster of its own: scripts/stack.sh up first",
)


def _stack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "stack.sh"), *args],
        cwd=ROOT,
        env=CRON_ENV,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_status_without_sbin_on_path_reports_the_running_postgresql_up() -> None:
    result = _stack("status")
    assert f"postgresql  up    127.0.0.1:{PORT}  data={STACK / 'postgres'}" in result.stdout, result
    assert "runuser" not in result.stderr


def test_up_without_sbin_on_path_finds_the_running_cluster_and_initialises_none() -> None:
    result = _stack("up", "postgres")
    assert result.returncode == 0, result.stderr
    assert "initialising" not in result.stderr
    assert f"PostgreSQL up on 127.0.0.1:{PORT} (data {STACK / 'postgres'})" in result.stderr
