"""Request middleware: a statement timeout for the SQL that web requests run, and read-replica routing.

Why a middleware and not a connection option: the consumer, Celery workers and management commands share
``DATABASES`` with the web process, and their statements (a batch COPY, retention deletes, a candle recompute over
a backfill) may rightly run longer. The timeout is set lazily, by an execute wrapper, before the first statement
of a request, and reset when the response is ready, so a request that never touches the database costs nothing
and a connection reused afterwards (tests, ``DATABASE_CONN_MAX_AGE`` > 0) is back to the server's default.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from cryptoproject.db_router import replica_reads

logger = logging.getLogger(__name__)


class _LazyTimeout:
    """Execute wrapper: ``SET statement_timeout`` once, just before the request's first statement."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.applied = False

    def __call__(self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any) -> Any:
        if not self.applied:
            self.applied = True
            # Session level, not SET LOCAL: requests run in autocommit, so a LOCAL setting would end with the
            # first statement's implicit transaction.
            context["cursor"].execute("SET statement_timeout = %s", [self.timeout_ms])
        return execute(sql, params, many, context)


class StatementTimeoutMiddleware:
    """Bound every SQL statement of a request to ``DATABASE_WEB_STATEMENT_TIMEOUT_MS`` (0: off)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Run the request with its statements bounded; the timeout is reset afterwards only if it was applied."""
        timeout_ms = int(settings.DATABASE_WEB_STATEMENT_TIMEOUT_MS)
        if timeout_ms <= 0:
            return self.get_response(request)
        wrapper = _LazyTimeout(timeout_ms)
        with connection.execute_wrapper(wrapper):
            response = self.get_response(request)
        if wrapper.applied:
            self._reset()
        return response

    @staticmethod
    def _reset() -> None:
        if connection.connection is None or connection.needs_rollback:
            return  # closed, or inside a broken atomic block that rolls back (and resets nothing needed) anyway
        try:
            with connection.cursor() as cursor:
                cursor.execute("RESET statement_timeout")
        except DatabaseError as exc:
            # A reset failing means the connection is broken; Django discards it at the end of the request.
            logger.warning("could not reset statement_timeout", extra={"error": repr(exc)})


class ReplicaReadsMiddleware:
    """Serve the reads of dashboard pages and the REST API from the read replica (``DATABASE_REPLICA_URL``).

    Only GET and HEAD of URLs in :attr:`NAMESPACES` are routed (see :mod:`cryptoproject.db_router`). Read-your-writes:
    a streaming replica trails the primary by milliseconds, seconds under load, so a client that just created a
    backtest run or changed an alert subscription could be sent to a page that does not show it yet. Every other
    method (a write, or an attempt at one) therefore sets a cookie that keeps that browser's reads on the primary for
    ``DATABASE_REPLICA_PIN_SECONDS``. A cookie rather than a session flag: no session write per POST, and it works
    for API clients too (those that send cookies back). It holds the end of the pin, checked here as well, so an old
    or forged cookie can pin a client for at most that long; pinning only ever means "read the primary", as without
    a replica.
    """

    NAMESPACES = frozenset({"dashboard", "api"})
    SAFE_METHODS = frozenset({"GET", "HEAD"})
    PIN_COOKIE = "primary_reads_until"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Route safe reads of :attr:`NAMESPACES` to the replica unless pinned; any other method sets the pin cookie."""
        pin_seconds = float(settings.DATABASE_REPLICA_PIN_SECONDS)
        if request.method not in self.SAFE_METHODS:
            response = self.get_response(request)
            if pin_seconds > 0:
                self._pin(response, pin_seconds)
            return response
        if self._pinned(request, pin_seconds) or not self._routed(request.path_info):
            return self.get_response(request)
        with replica_reads():
            return self.get_response(request)

    def _routed(self, path: str) -> bool:
        try:
            return resolve(path).namespace in self.NAMESPACES
        except Resolver404:
            return False

    def _pinned(self, request: HttpRequest, pin_seconds: float) -> bool:
        try:
            until = float(request.COOKIES.get(self.PIN_COOKIE, ""))
        except ValueError:
            return False
        now = time.time()
        return now < until <= now + pin_seconds

    def _pin(self, response: HttpResponse, pin_seconds: float) -> None:
        response.set_cookie(
            self.PIN_COOKIE,
            f"{time.time() + pin_seconds:.3f}",
            max_age=timedelta(seconds=pin_seconds),
            httponly=True,
            samesite="Lax",
            secure=settings.SESSION_COOKIE_SECURE,
        )
