"""Request middleware: a statement timeout for the SQL that web requests run.

Why a middleware and not a connection option: the consumer, Celery workers and management commands share
``DATABASES`` with the web process, and their statements (a batch COPY, retention deletes, a candle recompute over
a backfill) may rightly run longer. The timeout is set lazily, by an execute wrapper, before the first statement
of a request, and reset when the response is ready, so a request that never touches the database costs nothing
and a connection reused afterwards (tests, ``DATABASE_CONN_MAX_AGE`` > 0) is back to the server's default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse

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
