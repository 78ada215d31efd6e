"""Security helpers shared by every layer: credential redaction, the error-report filter, and the production
start-up guard against dangerous combinations of settings.

Nothing here imports the ORM at module level: ``settings.py`` imports it before Django is set up.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.views.debug import SafeExceptionReporterFilter

REDACTED = "********"
# "scheme://user:password@host" anywhere in a text (error messages quote URLs): the userinfo part is dropped, up to
# the authority's LAST "@" (greedy), so a password with an unencoded "@" ("p@ss") leaves no part of itself behind.
_USERINFO_IN_TEXT = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s'\"]*@")
# The local development key: production refuses it even when set explicitly.
DEV_SECRET_PREFIX = "django-insecure-"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def redact_url(url: str) -> str:
    """``url`` without its userinfo (``redis://:pw@h:6379/0`` -> ``redis://h:6379/0``); text that is not a URL
    with credentials comes back unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if not parts.scheme or "@" not in parts.netloc:
        return redact_text(url)
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def redact_text(text: str) -> str:
    """Every ``scheme://userinfo@`` in ``text`` reduced to ``scheme://`` (error messages that quote a URL)."""
    return _USERINFO_IN_TEXT.sub(r"\g<scheme>", text)


def url_host(url: str) -> str:
    """``host[:port]`` of ``url``, for logs (never the path or query, which carry webhook tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "?"
    return f"{host}:{port}" if port else host


class SensitiveSettingsFilter(SafeExceptionReporterFilter):
    """Django's filter, plus every setting that holds a URL, DSN or Kafka credential.

    Error reports (the debug page, admin e-mails) then never show ``DATABASE_URL``, ``REDIS_URL`` and friends,
    and any other string setting has its URL userinfo removed.
    """

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|DSN|LOCATION|BROKER|BACKEND_URL|SASL|DATABASES|"
        "CACHES|CHANNEL_LAYERS",
        flags=re.IGNORECASE,
    )

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        """Django's cleansing, then URL userinfo removed from any plain string value."""
        cleansed = super().cleanse_setting(key, value)
        if type(cleansed) is str:  # not lazy proxies (their text is computed on demand)
            return redact_text(cleansed)
        return cleansed


def production_problems(
    *,
    debug: bool,
    secret_key: str,
    allowed_hosts: Iterable[str],
    webhook_allow_private: bool,
    email_backend: str,
    login_required: bool = True,
    public_readonly: bool = False,
) -> list[str]:
    """Dangerous combinations of settings, each naming the variable to change; empty when none.

    With ``debug`` true only an open ``DJANGO_ALLOWED_HOSTS`` is refused (a debug page for the whole internet).
    In production a dashboard without login is refused unless ``public_readonly`` says it is meant
    (``DASHBOARD_PUBLIC_READONLY=true``: anonymous visitors read, only signed-in users start anything).
    """
    hosts = list(allowed_hosts)
    problems: list[str] = []
    if debug:
        if "*" in hosts:
            problems.append("DJANGO_DEBUG=true with DJANGO_ALLOWED_HOSTS='*' shows debug pages to every host")
        return problems
    if secret_key.startswith(DEV_SECRET_PREFIX) or len(secret_key) < 50 or len(set(secret_key)) < 5:
        problems.append("DJANGO_SECRET_KEY must be at least 50 random characters and not the development key")
    if "*" in hosts:
        problems.append("DJANGO_ALLOWED_HOSTS='*' accepts any Host header in production; name the hosts")
    if webhook_allow_private:
        problems.append("ALERT_WEBHOOK_ALLOW_PRIVATE=true opens the webhook SSRF guard; it is for tests only")
    if email_backend.endswith(("console.EmailBackend", "locmem.EmailBackend")):
        problems.append(f"DJANGO_EMAIL_BACKEND={email_backend} would print alert e-mails instead of sending them")
    if not login_required and not public_readonly:
        problems.append(
            "DASHBOARD_LOGIN_REQUIRED=false opens the pages, the API and the sockets to everyone; set it to true, or "
            "set DASHBOARD_PUBLIC_READONLY=true to mean a public read-only dashboard"
        )
    return problems


def client_ip(request: Any) -> str:
    """The client's address under the ``DJANGO_TRUSTED_PROXY_COUNT`` rule that DRF's throttles also use.

    With no trusted proxy (the default) it is the socket's peer, ``REMOTE_ADDR``: a client-supplied
    ``X-Forwarded-For`` is ignored, so rotating it resets no limit. Behind ``n`` proxies it is the address the
    outermost trusted proxy saw (the ``n``-th from the right).
    """
    from django.conf import settings

    count = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0))
    remote = str(request.META.get("REMOTE_ADDR") or "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if count <= 0 or not forwarded:
        return remote
    addresses = [a.strip() for a in str(forwarded).split(",") if a.strip()]
    return addresses[-min(count, len(addresses))] if addresses else remote


def lockout_address(request: Any) -> str:
    """The address login lockout counts (``AXES_CLIENT_IP_CALLABLE``): :func:`client_ip`, with an IPv6 client
    reduced to its /64 (written as the network's first address, ``2001:db8:1:2::``).

    A home or cloud subscriber gets a whole /64 (often a /56) and picks any address in it, so counting single IPv6
    addresses would let one client rotate through 2^64 fresh counts. An IPv4-mapped address counts as its IPv4.
    """
    raw = client_ip(request)
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False).network_address)
    return str(address)
