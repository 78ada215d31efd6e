"""scripts/stack.sh on this checkout's running stack, with the PATH of cron or of ``su`` without ``-``.

Such a PATH lacks /usr/sbin, where ``runuser`` lives; as root the script needs it for every PostgreSQL check. It once
took "cannot check" for "down", reported a running PostgreSQL as down and began to initialise a second cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = Path(os.environ.get("STACK_DIR", ROOT / ".stack"))
PORT = os.environ.get("STACK_PG_PORT", "15432")
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


# /usr/sbin and /sbin hidden behind an empty directory in a mount namespace of the child alone: runuser is gone.
HIDE_SBIN = 'for d in /usr/sbin /sbin; do [ -L "$d" ] || mount --bind "$0" "$d" || exit 99; done; exec bash "$@"'


def _without_runuser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("hiding /usr/sbin needs root and unshare")
    empty = tmp_path / "empty"
    empty.mkdir()
    script = str(ROOT / "scripts" / "stack.sh")
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", HIDE_SBIN, str(empty), script, *args],
        cwd=ROOT,
        env=CRON_ENV,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if result.returncode == 99 or "unshare:" in result.stderr:
        pytest.skip(f"no mount namespace here: {result.stderr.strip()}")
    return result


@pytest.mark.parametrize("args", [("status",), ("up", "postgres")], ids=" ".join)
def test_without_runuser_it_says_what_is_missing_and_never_reports_down(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = _without_runuser(tmp_path, *args)
    assert result.returncode != 0
    assert "ERROR: runuser not found (PATH, /usr/sbin, /sbin)" in result.stderr
    assert "postgresql  down" not in result.stdout
    assert "initialising" not in result.stderr
