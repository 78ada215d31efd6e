"""Telegram through the Bot API: ``POST {TELEGRAM_API_URL}/bot<TOKEN>/sendMessage`` with ``chat_id`` and ``text``.

The API answers ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description"}``; 429 carries
``parameters.retry_after`` (seconds), honoured as the earliest next attempt. 400 (chat not found, empty text) and
403 (bot blocked) are permanent, 5xx transient. The token is part of the URL path: errors name the API's host only.
"""

from __future__ import annotations

import http.client
import json

from django.conf import settings

from cryptoproject.security import url_host
from notifications.channels.base import Deadline, PermanentError, TransientError, one_text
from notifications.channels.httperrors import status_error, transport_error
from notifications.http import request
from notifications.models import Delivery

MAX_TEXT = 4096  # the Bot API's limit for one message


def target(delivery: Delivery) -> str:
    """The circuit breaker's target: the Bot API."""
    return f"telegram:{url_host(settings.TELEGRAM_API_URL)}"


def send(delivery: Delivery, deadline: Deadline) -> None:
    """Send the subject and body (:func:`one_text`) as one message to the destination's chat."""
    token = settings.TELEGRAM_BOT_TOKEN
    if not token:
        raise PermanentError("Telegram not configured (TELEGRAM_BOT_TOKEN)", "failed: Telegram is not configured")
    where = url_host(settings.TELEGRAM_API_URL)
    text = one_text(delivery.subject, delivery.body)
    body = json.dumps({"chat_id": delivery.destination.target, "text": text[:MAX_TEXT]}).encode()
    headers = {"Content-Type": "application/json"}
    try:
        response = request("POST", f"{settings.TELEGRAM_API_URL}/bot{token}/sendMessage", deadline, body, headers)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise transport_error(exc, where) from exc
    data = _json(response.body)
    if 200 <= response.status < 300 and data.get("ok") is True:
        return
    description = str(data.get("description") or "")[:160]
    if response.status == 429:
        parameters = data.get("parameters")
        wait = parameters.get("retry_after") if isinstance(parameters, dict) else None
        raise TransientError(
            f"HTTP 429 from {where}: retry after {wait}",
            "failed: Telegram asked to slow down",
            float(wait) if isinstance(wait, int | float) else None,
        )
    error = status_error(response, where, description)
    if isinstance(error, PermanentError) and description:
        error.public = f"failed: Telegram: {description}"
    raise error


def _json(raw: bytes) -> dict[str, object]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
