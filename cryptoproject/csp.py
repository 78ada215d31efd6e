"""Content-Security-Policy on every response (Django 5.2 has no CSP of its own; 6.0 adds one).

Every script is a static file (Chart.js is vendored, the Swagger UI comes from the sidecar package and its start-up
script from the split view's ``?script`` URL), so ``script-src 'self'`` with no inline script and no eval: an
injected ``<script>`` or ``onclick=`` does not run. Styles keep ``'unsafe-inline'``: the templates, the login page,
the Swagger UI's own page and Django's admin carry inline ``style`` attributes and ``<style>`` blocks, and an
injected style cannot run code. ``connect-src 'self'`` covers the API and the Channels WebSocket on the same host
(``'self'`` matches ws:/wss: to the page's own host).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"
POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        # Swagger UI's icons and Chart.js exports are data: URLs.
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        # Redoc runs its search in a worker made from a blob.
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        # As X-Frame-Options DENY: no page is framed (clickjacking).
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """Add :data:`POLICY` to every response that has no policy of its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """The view's response, with the policy."""
        response = self.get_response(request)
        response.headers.setdefault(HEADER, POLICY)
        return response
