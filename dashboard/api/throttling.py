"""DRF throttles that fail open: when the cache holding their counters (Redis) is down, the request is allowed
and the failure logged, so an outage of Redis degrades rate limiting instead of failing every API call with 500.

The client identity is DRF's ``get_ident``, governed by ``NUM_PROXIES`` (``DJANGO_TRUSTED_PROXY_COUNT``): with no
trusted proxy a client-supplied ``X-Forwarded-For`` is ignored.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework import throttling

from cryptoproject.cache_serializer import UnreadableCacheValueError

if TYPE_CHECKING:  # rest_framework.views imports the throttle classes: a runtime import would be circular
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

# At most one warning per this many seconds per process: an outage must not become a log flood.
_LOG_EVERY_SECONDS = 10.0
_last_logged = 0.0


def _log_fail_open(scope: str, exc: Exception) -> None:
    global _last_logged
    now = time.monotonic()
    if now - _last_logged >= _LOG_EVERY_SECONDS:
        _last_logged = now
        logger.warning(
            "API throttle cache unavailable: allowing the request", extra={"scope": scope, "error": repr(exc)}
        )


class _FailOpen(throttling.SimpleRateThrottle):
    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return bool(super().allow_request(request, view))
        except (RedisError, OSError, UnreadableCacheValueError) as exc:  # the last: a counter that is not JSON
            _log_fail_open(str(self.scope), exc)
            self.history = []
            return True


class AnonRateThrottle(_FailOpen, throttling.AnonRateThrottle):
    """Anonymous requests per client address (``API_THROTTLE_ANON``)."""


class UserRateThrottle(_FailOpen, throttling.UserRateThrottle):
    """Requests per signed-in user (``API_THROTTLE_USER``)."""


class BacktestStartThrottle(_FailOpen, throttling.UserRateThrottle):
    """Backtests started per user (per address when anonymous), ``API_THROTTLE_BACKTEST``; other methods pass."""

    scope = "backtest_start"

    def get_rate(self) -> str | None:
        """``API_THROTTLE_BACKTEST``, read when the throttle is made (DRF's rates dict is fixed at import)."""
        return str(settings.API_THROTTLE_BACKTEST)

    def allow_request(self, request: Request, view: APIView) -> bool:
        """Count and limit ``POST`` only: listing and polling runs is the ordinary user throttle's business."""
        if request.method != "POST":
            return True
        return super().allow_request(request, view)
