"""scripts/stack.sh in a checkout the ``postgres`` system user cannot enter (a clone under /root, a ``mktemp -d``
folder): run as root, PostgreSQL's data falls back to /var/tmp, and there each stack must keep a cluster of its own.
Keyed by the checkout alone, ``make services-check``'s stack 9 and the default stack shared one cluster, and the
second ``up`` failed with ``psql: error: connection to server on socket ".../run/.s.PGSQL.<port>" failed``."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the /var/tmp fallback is for root (PostgreSQL then runs as the postgres user)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def checkout() -> Iterator[Path]:
    """A checkout-like folder of mode 0700 (root's), holding links to the scripts and configuration stack.sh uses."""
    folder = Path(tempfile.mkdtemp(prefix="cryptoproject-checkout-"))
    folder.chmod(0o700)
    for name in ("scripts", "deploy", ".venv"):
        (folder / name).symlink_to(ROOT / name)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_two_stacks_of_an_unreachable_checkout_get_a_cluster_each(checkout: Path) -> None:
    script = str(checkout / "scripts" / "stack.sh")
    assert subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(checkout)], check=False).returncode
    started: list[tuple[dict[str, str], Path]] = []
    try:
        for name in (".stack-a", ".stack-b"):
            env = dict(os.environ, STACK_DIR=str(checkout / name), STACK_PG_PORT=str(_free_port()))
            result = subprocess.run(
                ["bash", script, "up", "postgres"], env=env, capture_output=True, text=True, timeout=180, check=False
            )
            said = re.search(r"\(data (\S+)\)", result.stderr)
            if said:
                started.append((env, Path(said.group(1))))
            assert result.returncode == 0, result.stderr
        data_a, data_b = (data for _env, data in started)
        assert data_a != data_b
        assert data_a.is_relative_to("/var/tmp")
        assert data_b.is_relative_to("/var/tmp")
        for env, _data in started:
            port = env["STACK_PG_PORT"]
            with psycopg.connect(f"postgresql://crypto:crypto@127.0.0.1:{port}/crypto", connect_timeout=10) as conn:
                assert conn.execute("SELECT inet_server_port()").fetchone() == (int(port),)
    finally:
        for env, data in started:
            subprocess.run(["bash", script, "down", "postgres"], env=env, capture_output=True, timeout=120, check=False)
            shutil.rmtree(data.parent, ignore_errors=True)
