"""Per-user quotas: one check for everyone (watchlist size, API tokens, and other apps' rules and backtests).

:func:`check_quota` raises :class:`QuotaExceeded`, a DRF ``APIException`` that the API's error handler answers with
its JSON envelope naming ``param`` (400 for a size limit by default, 429 for a rate); pages show its message.
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException

logger = logging.getLogger(__name__)


class QuotaExceeded(APIException):
    """A user asked for more than a quota allows; ``param`` names the request field it concerns."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    default_code = "quota_exceeded"

    def __init__(self, param: str, message: str, status_code: int = status.HTTP_400_BAD_REQUEST) -> None:
        super().__init__(detail=message, code=self.default_code)
        self.param = param
        self.message = message
        self.status_code = status_code


def check_quota(
    user: Any,
    name: str,
    current: int,
    limit: int,
    *,
    adding: int = 1,
    param: str | None = None,
    status_code: int = status.HTTP_400_BAD_REQUEST,
) -> None:
    """Raise :class:`QuotaExceeded` when ``current + adding`` would pass ``limit``.

    Args:
        user: Who asks (logged with the refusal).
        name: What is counted, in the message ("watchlist markets", "alert rules").
        current: How many the user has now.
        limit: The most allowed.
        adding: How many the request adds.
        param: The request field to name in the 400/429 (``name`` when not given).
        status_code: 400 for a size limit, 429 for a rate limit.
    """
    if current + adding <= limit:
        return
    logger.info("quota exceeded", extra={"user_id": getattr(user, "pk", None), "quota": name, "limit": limit})
    raise QuotaExceeded(
        param or name,
        f"quota exceeded: at most {limit} {name} per user (you have {current}, this adds {adding}).",
        status_code,
    )
