"""websocket-client's private internals ingest uses (ingest/websocket_internals.py) are all still there.

An upgrade of the pin fails here first, naming the version and what moved, instead of ingest silently reading
frames without read-ahead (or crashing on a changed ``_recv``).
"""

from __future__ import annotations

import re

import websocket

from ingest.client import ReadAhead
from ingest.websocket_internals import (
    PINNED_VERSION,
    WEBSOCKET_INTERNALS,
    install_reader,
    installed_version,
    missing_internals,
    signature_changes,
)
from tests.conftest import ROOT


def test_the_internals_were_read_from_the_pinned_and_installed_version() -> None:
    pinned = re.search(r"^websocket-client==(\S+)", (ROOT / "requirements" / "base.in").read_text(), re.M)
    assert pinned is not None
    assert pinned.group(1) == PINNED_VERSION == installed_version(), (
        f"websocket-client {installed_version()} installed, {pinned.group(1)} pinned: ingest/websocket_internals.py "
        f"was written against {PINNED_VERSION}; re-read the internals it lists, then update PINNED_VERSION"
    )


def test_a_real_socket_has_every_internal_and_the_same_signatures() -> None:
    ws = websocket.WebSocket()  # builds its frame reader without connecting
    assert missing_internals(ws) == [], f"websocket-client {installed_version()} moved these"
    assert signature_changes() == [], f"websocket-client {installed_version()} changed these"
    assert install_reader(ws, ReadAhead)
    assert isinstance(ws.frame_buffer.recv, ReadAhead)
    assert ws.frame_buffer.recv.raw == ws._recv


def test_missing_internals_are_named_and_leave_the_socket_alone() -> None:
    class Bare:
        pass

    bare = Bare()
    assert missing_internals(bare) == [f"Bare.{path}" for path in WEBSOCKET_INTERNALS]
    assert install_reader(bare, ReadAhead) is False  # type: ignore[arg-type]
    assert vars(bare) == {}
