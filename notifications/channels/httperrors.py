"""Turning an HTTP API's transport failures and answers into Transient/Permanent errors (shared by the channels)."""

from __future__ import annotations

import http.client

from notifications.channels.base import DeadlineExceededError, PermanentError, TransientError
from notifications.http import Response


def transport_error(exc: BaseException, where: str) -> TransientError:
    """A network failure or a passed deadline: transient (it names ``where``, the host, never the URL's path)."""
    if isinstance(exc, DeadlineExceededError):
        return TransientError(
            f"{where}: no complete answer before the attempt's deadline", f"failed: {where} timed out"
        )
    if isinstance(exc, TimeoutError):
        return TransientError(f"{where}: timed out ({exc})", f"failed: {where} timed out")
    if isinstance(exc, http.client.HTTPException):
        return TransientError(f"{where}: bad HTTP answer ({type(exc).__name__})", f"failed: {where} answered badly")
    return TransientError(f"cannot reach {where}: {type(exc).__name__}", f"failed: cannot reach {where}")


def status_error(response: Response, where: str, detail: str = "") -> TransientError | PermanentError:
    """A non-2xx answer: 429, 408 and 5xx transient (``Retry-After`` honoured), any other permanent (3xx: no
    redirect is followed)."""
    status = response.status
    text = f"HTTP {status} from {where}" + (f": {detail}" if detail else "")
    if status in {408, 429} or status >= 500:
        retry_after: float | None = None
        raw = response.headers.get("retry-after", "")
        if raw.strip().isdigit():
            retry_after = float(raw.strip())
        return TransientError(text, f"failed: {where} answered HTTP {status}", retry_after)
    return PermanentError(text, f"failed: {where} refused the message (HTTP {status})", answered=True)
