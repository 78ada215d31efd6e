"""The webhook SSRF guard: which URLs a notification may be posted to.

Checked when a destination is saved (:mod:`notifications.validation`) and again before every send, because DNS
answers change; the sender connects to the address checked here (:mod:`notifications.http`), so a second DNS answer
can never differ from the checked one.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from notifications import resolver
from notifications.deadline import Deadline, DeadlineExceededError


class UnsafeTargetError(ValueError):
    """A webhook URL that must not be called: bad scheme or port, unresolvable, or not a public address."""


# Beyond what ``is_global`` already excludes (RFC 1918, loopback, link-local, 100.64.0.0/10, documentation,
# benchmarking, reserved...): ranges that route to someone else's network or are deprecated.
_REFUSED_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "fec0::/10",  # IPv6 site-local (deprecated; still routed inside some networks)
        "2002::/16",  # 6to4: embeds an IPv4 address, possibly a private one
        "2001::/32",  # Teredo: embeds the client's IPv4 address
        "64:ff9b:1::/48",  # local-use NAT64
        "192.0.0.0/24",  # IETF protocol assignments (Python < 3.12 calls parts of it global)
        "100.100.100.200/32",  # Alibaba Cloud metadata (inside 100.64.0.0/10; named for clarity)
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a global unicast address a webhook may be sent to; IPv4 embedded in IPv6 (mapped, NAT64) is
    judged by the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if address in _NAT64:
            return is_public_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if any(address.version == net.version and address in net for net in _REFUSED_NETWORKS):
        return False
    return bool(address.is_global and not address.is_multicast)


@dataclass(frozen=True)
class WebhookTarget:
    """A checked webhook URL: the addresses its host resolved to, all of them allowed."""

    url: str
    host: str
    port: int
    addresses: list[str]


def resolve_webhook_target(
    url: str, allow_private: bool | None = None, deadline: Deadline | None = None
) -> WebhookTarget:
    """Check ``url`` once: http(s), an allowed port, and every address its host resolves to public.

    ``allow_private`` defaults to ``settings.ALERT_WEBHOOK_ALLOW_PRIVATE`` (development and tests only, refused in
    production): it allows private addresses and any port, for a local receiver. The caller connects to one of the
    returned addresses (:mod:`notifications.http`), so a second DNS answer can never differ from the checked one.
    ``deadline`` (a send's): the lookup must answer before it, else ``DeadlineExceededError`` (transient: the name
    may resolve on the next attempt), not ``UnsafeTargetError``.
    """
    allow = settings.ALERT_WEBHOOK_ALLOW_PRIVATE if allow_private is None else allow_private
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeTargetError(f"webhook URL scheme must be http or https, not {parts.scheme or 'none'!r}")
    host = parts.hostname
    if not host:
        raise UnsafeTargetError("webhook URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeTargetError(f"webhook URL has an invalid port: {exc}") from exc
    try:
        if deadline is None:  # saving a destination: the request's own time
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        else:
            infos = resolver.getaddrinfo(host, port, deadline)
    except DeadlineExceededError:
        raise
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UnsafeTargetError(f"webhook host {host!r} does not resolve: {exc}") from exc
    addresses = sorted({str(info[4][0]).split("%", 1)[0] for info in infos})
    if not addresses:
        raise UnsafeTargetError(f"webhook host {host!r} does not resolve")
    if not allow:
        for raw in addresses:
            if not is_public_address(ipaddress.ip_address(raw)):
                raise UnsafeTargetError(
                    f"webhook host {host!r} resolves to {raw}, not a public address (private, loopback, "
                    "link-local, shared, site-local, 6to4/Teredo or reserved; ALERT_WEBHOOK_ALLOW_PRIVATE=true "
                    "allows it in development)"
                )
    if not allow and port not in settings.ALERT_WEBHOOK_ALLOWED_PORTS:
        allowed = ", ".join(str(p) for p in settings.ALERT_WEBHOOK_ALLOWED_PORTS)
        raise UnsafeTargetError(f"webhook port {port} is not allowed (ALERT_WEBHOOK_ALLOWED_PORTS: {allowed})")
    return WebhookTarget(url=url, host=host, port=port, addresses=addresses)


def check_webhook_target(url: str, allow_private: bool | None = None) -> list[str]:
    """The addresses ``url``'s host resolves to, all allowed; raises :class:`UnsafeTargetError` otherwise.

    Called when a subscription is saved and again before every send, because DNS answers change.
    """
    return resolve_webhook_target(url, allow_private).addresses
