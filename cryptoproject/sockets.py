"""What every app's WebSocket consumers share: the close code for "not signed in" and the per-session group that
logging out closes (``dashboard.signals`` sends ``session.logout`` there; each consumer that joined it closes)."""

from __future__ import annotations

import hashlib

# Application close codes (4000-4999): the browser's reconnect logic stops retrying on these.
CLOSE_UNAUTHENTICATED = 4401
LOGOUT_EVENT = "session.logout"


def session_group(session_key: str) -> str:
    """The channel group of one login session's sockets (a hash: session keys never appear in Redis key names)."""
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:32]
