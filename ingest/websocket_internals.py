"""Every use of websocket-client's private internals, in one module behind a small interface.

The pinned websocket-client (:data:`PINNED_VERSION`) reads each frame with 3-4 ``recv()`` calls of exactly the
bytes it needs and offers no public way to read ahead. :func:`install_reader` replaces the callable its frame
reader pulls bytes from (``ws.frame_buffer.recv``, set from the private ``ws._recv``) with a wrapper of
``ws._recv`` (``ingest.client.ReadAhead``), keeping websocket-client's own error handling underneath.

:func:`missing_internals` lists what of this a given socket lacks, and :func:`signature_changes` whether
``_recv`` and the frame reader still take one ``bufsize``; ``tests/foundation/test_websocket_internals.py`` checks
both on the installed release and fails, naming each change and the version, when an upgrade moves them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import websocket

from cryptoproject.internals import missing_paths

#: the websocket-client release these internals were read from (requirements/base.in pins it)
PINNED_VERSION = "1.9.2"
#: attribute paths of a ``websocket.WebSocket`` this module reads or replaces
WEBSOCKET_INTERNALS = ("_recv", "frame_buffer", "frame_buffer.recv")

#: what reads the socket: ``recv(bufsize) -> bytes``
Recv = Callable[[int], bytes]


def missing_internals(ws: Any) -> list[str]:
    """The internals ``ws`` lacks (``[]`` with the pinned websocket-client), as ``Class.path`` strings."""
    return missing_paths(ws, WEBSOCKET_INTERNALS)


def signature_changes() -> list[str]:
    """How the installed release's ``WebSocket._recv`` and frame reader differ from ``recv(bufsize)`` (``[]``)."""
    changes = []
    recv = getattr(websocket.WebSocket, "_recv", None)
    if recv is None or list(inspect.signature(recv).parameters) != ["self", "bufsize"]:
        changes.append(f"WebSocket._recv{inspect.signature(recv) if recv else ' is gone'}, expected (self, bufsize)")
    init = getattr(getattr(websocket, "frame_buffer", None), "__init__", None)
    if init is None or list(inspect.signature(init).parameters)[:2] != ["self", "recv_fn"]:
        changes.append("frame_buffer(recv_fn, ...) changed: the frame reader no longer takes a recv callable first")
    return changes


def installed_version() -> str:
    """The websocket-client version importable here."""
    return str(websocket.__version__)


def install_reader(ws: websocket.WebSocket, wrap: Callable[[Recv], Recv]) -> bool:
    """Make ``ws``'s frame reader pull bytes from ``wrap(ws._recv)``; False (nothing changed) without the internals."""
    if missing_internals(ws):
        return False
    ws.frame_buffer.recv = wrap(ws._recv)
    return True
