"""SMS through Twilio's Programmable Messaging REST API.

``POST {TWILIO_API_URL}/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json``, form-encoded ``To``, ``From`` and
``Body``, HTTP basic auth ``SID:token``. Twilio answers 201 with the message; errors carry a JSON ``code``: 21211
(invalid ``To``) and the other 4xx are permanent, 429 (20429) and 5xx transient. The token never appears in a log or
an error: errors name the API's host and Twilio's code.
"""

from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import quote, urlencode

import phonenumbers
from django.conf import settings

from cryptoproject.security import url_host
from notifications.channels.base import Deadline, PermanentError, one_text
from notifications.channels.httperrors import status_error, transport_error
from notifications.http import request
from notifications.models import Delivery

MAX_BODY = 1600  # Twilio refuses longer bodies (error 21617)


def e164(number: str) -> str:
    """``number`` in E.164 (``+<country><number>``); raises ``ValueError`` when it is not a valid one."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not an E.164 phone number: {exc}") from exc
    if not number.startswith("+") or not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid E.164 phone number (+ and country code, e.g. +14155550100)")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def target(delivery: Delivery) -> str:
    """The circuit breaker's target: the Twilio API."""
    return f"sms:{url_host(settings.TWILIO_API_URL)}"


def send(delivery: Delivery, deadline: Deadline) -> None:
    """Send the subject and body as one SMS (:func:`one_text`, up to Twilio's limit)."""
    sid, token, sender = settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM
    if not (sid and token and sender):
        raise PermanentError("SMS not configured (TWILIO_ACCOUNT_SID/TOKEN/FROM)", "failed: SMS is not configured")
    try:
        to = e164(delivery.destination.target)
    except ValueError as exc:
        raise PermanentError(f"invalid number: {exc}", f"failed: {exc}") from exc
    where = url_host(settings.TWILIO_API_URL)
    url = f"{settings.TWILIO_API_URL}/2010-04-01/Accounts/{quote(sid, safe='')}/Messages.json"
    text = one_text(delivery.subject, delivery.body)
    body = urlencode({"To": to, "From": sender, "Body": text[:MAX_BODY]}).encode()
    auth = base64.b64encode(f"{sid}:{token}".encode()).decode()
    headers = {
        "Authorization": f"Basic {auth}",
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
        # Twilio ignores it; kept so a proxy or the stand-in can see repeats of one delivery.
        "I-Twilio-Idempotency-Token": delivery.key,
    }
    try:
        response = request("POST", url, deadline, body, headers)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise transport_error(exc, where) from exc
    if 200 <= response.status < 300:
        return
    code, message = _twilio_error(response.body)
    error = status_error(response, where, f"Twilio error {code}" if code else "")
    if code == 21211:
        raise PermanentError(
            f"HTTP {response.status} from {where}: Twilio error 21211",
            "failed: Twilio: invalid 'To' phone number",
            answered=True,
        )
    if code and isinstance(error, PermanentError):
        error.public = f"failed: Twilio error {code}: {message[:120]}"
    raise error


def _twilio_error(raw: bytes) -> tuple[int, str]:
    """Twilio's error ``code`` and ``message`` from its JSON answer (0, "" when it is not one)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return 0, ""
    if not isinstance(data, dict):
        return 0, ""
    code = data.get("code")
    return (code if isinstance(code, int) else 0), str(data.get("message") or "")
