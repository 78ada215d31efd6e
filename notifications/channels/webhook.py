"""Webhooks: Slack (``{"text"}``), Discord (``{"content"}``) and generic JSON, signed with HMAC-SHA256.

A generic webhook's request carries (docs/ALERTS.md, "Verifying a webhook"):

- ``X-Idempotency-Key``: the delivery's key, the same on every attempt: receivers drop a duplicate by it;
- ``X-Timestamp``: Unix seconds when the attempt started;
- ``X-Signature: sha256=<hex>``: HMAC-SHA256, keyed by the destination's secret, over ``<timestamp>.<raw body>``.
  A receiver recomputes it, compares in constant time and refuses a timestamp more than 5 minutes old (a replay).

Every send re-checks the URL with the SSRF guard and connects to the address it checked.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from typing import Any

from cryptoproject.security import url_host
from notifications.channels.base import Deadline, DeadlineExceededError, PermanentError, one_text
from notifications.channels.httperrors import status_error, transport_error
from notifications.http import request
from notifications.models import Delivery, WebhookFormat
from notifications.targets import UnsafeTargetError, resolve_webhook_target

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"
KEY_HEADER = "X-Idempotency-Key"


def body_of(delivery: Delivery) -> dict[str, Any]:
    """The JSON body for the destination's format."""
    text = one_text(delivery.subject, delivery.body)
    fmt = delivery.destination.format
    if fmt == WebhookFormat.SLACK:
        return {"text": text}
    if fmt == WebhookFormat.DISCORD:
        return {"content": text[:2000]}  # Discord refuses longer content
    return {"id": delivery.key, "subject": delivery.subject, "text": delivery.body, "data": delivery.payload}


def signature(secret: str, timestamp: str, raw: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed by ``secret`` over ``<timestamp>.<raw body>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, raw: bytes, header: str, now: float, tolerance: float = 300.0) -> bool:
    """What a receiver does: the signature matches (constant-time) and the timestamp is recent."""
    try:
        fresh = abs(now - float(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, raw), header)


def target(delivery: Delivery) -> str:
    """The circuit breaker's target: the webhook's host (one dead host never delays the others)."""
    return f"webhook:{url_host(delivery.destination.target)}"


def send(delivery: Delivery, deadline: Deadline) -> None:
    """POST the body; returns on 2xx, raises Transient/PermanentError otherwise. Errors name the host only: the
    path of a Slack or Discord URL is its secret."""
    url = delivery.destination.target
    where = url_host(url)
    try:
        checked = resolve_webhook_target(url, deadline=deadline)  # the lookup counts inside the deadline
    except UnsafeTargetError as exc:
        raise PermanentError(str(exc), f"refused: {exc}") from exc
    except DeadlineExceededError as exc:
        raise transport_error(exc, where) from exc
    raw = json.dumps(body_of(delivery), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "cryptoproject-notify/1",
        KEY_HEADER: delivery.key,
    }
    if delivery.destination.format == WebhookFormat.GENERIC:
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        if delivery.destination.secret:
            headers[SIGNATURE_HEADER] = signature(delivery.destination.secret, timestamp, raw)
    try:
        response = request("POST", url, deadline, raw, headers, address=checked.addresses[0])
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise transport_error(exc, where) from exc
    if not 200 <= response.status < 300:
        raise status_error(response, where)
