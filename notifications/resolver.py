"""Name resolution inside an attempt's total deadline.

``socket.getaddrinfo`` blocks in the C library and takes no timeout: a slow or dead DNS server holds the caller for
the resolver's own timeouts (glibc: 5 s per try, per server, per address family), and nothing can interrupt it. So
the lookup runs on a daemon thread and the attempt waits for it at most the time left before its deadline: past it,
:class:`~notifications.channels.base.DeadlineExceededError` (a transient failure, counted and retried) while the
abandoned lookup finishes on its own (its thread ends when the resolver gives up; each sender thread starts at most
one per attempt, so they cannot pile up beyond a few per deadline of resolver timeout). A numeric address needs no
DNS and is answered on the calling thread.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from typing import Any

from notifications.deadline import Deadline, DeadlineExceededError

AddrInfo = tuple[Any, ...]

#: The system resolver. Tests replace it to make one name's lookup stall (a resolver that does not answer), so the
#: deadline is exercised through the real sending path.
LOOKUP: Callable[..., list[AddrInfo]] = socket.getaddrinfo


def _numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def getaddrinfo(host: str, port: int, deadline: Deadline) -> list[AddrInfo]:
    """``socket.getaddrinfo(host, port)`` for a TCP stream, answered before ``deadline`` or not at all.

    Raises ``DeadlineExceededError`` when the lookup has not answered in the time left, else what the lookup raised
    (``socket.gaierror``, ``UnicodeError``).
    """
    kwargs = {"type": socket.SOCK_STREAM, "proto": socket.IPPROTO_TCP}
    if _numeric(host):
        return socket.getaddrinfo(host, port, **kwargs)
    lookup = LOOKUP  # read once: the thread uses the resolver of this call
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["infos"] = lookup(host, port, **kwargs)
        except BaseException as exc:  # noqa: BLE001 (handed to the waiting caller, who re-raises it)
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"resolve {host}", daemon=True).start()
    if not done.wait(deadline.remaining()):
        raise DeadlineExceededError(f"the attempt's deadline passed while resolving {host}")
    if "error" in outcome:
        raise outcome["error"]
    return list(outcome["infos"])


def addresses(host: str, port: int, deadline: Deadline) -> list[str]:
    """The distinct addresses ``host`` resolves to, in the resolver's order (IPv6 scope ids dropped)."""
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in getaddrinfo(host, port, deadline)))
