"""Fixtures of the history tests: an archive mirror of a folder, served in-process on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from history.mirror import MirrorServer, start_in_thread
from tests.conftest import DATA

BUNDLE = DATA / "binance-klines"
H1 = BUNDLE / "data/spot/monthly/klines/BTCUSDT/1h"
M1 = BUNDLE / "data/spot/daily/klines/BTCUSDT/1m"


@pytest.fixture
def mirror() -> Iterator[Callable[[Path], MirrorServer]]:
    """``mirror(root)`` serves ``root`` on a free port until the test ends."""
    servers: list[MirrorServer] = []

    def _start(root: Path) -> MirrorServer:
        server = start_in_thread(root)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.shutdown()
        server.server_close()


def copy_into(root: Path, *files: Path, checksums: bool = True) -> None:
    """Copy bundled files (and their CHECKSUMs) into a mirror root, keeping the archive's layout."""
    for f in files:
        target = root / f.relative_to(BUNDLE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
        checksum = f.with_name(f.name + ".CHECKSUM")
        if checksums and checksum.exists():
            shutil.copyfile(checksum, target.with_name(target.name + ".CHECKSUM"))
