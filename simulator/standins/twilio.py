"""A stand-in for Twilio's Programmable Messaging API (``POST /2010-04-01/Accounts/{Sid}/Messages.json``).

As Twilio: HTTP basic auth ``AccountSid:AuthToken`` (401, code 20003, otherwise; the path's Sid must be the
user's), form-encoded ``To``, ``From`` and ``Body``; ``201`` with the message resource, or an error
``{"code", "message", "more_info", "status"}``: 21211 an invalid ``To`` (not E.164, or Twilio's magic test number
+15005550001), 21604 no ``To``, 21602 no ``Body``, 21212 a ``From`` that is not the account's number, 20429 on an
injected 429 and 20500 on an injected 5xx.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
import uuid
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

import phonenumbers

from simulator.standins.base import StandinHandler, StandinServer, Store, serve

INVALID_TO = "+15005550001"  # Twilio's magic test number for "invalid To" (21211)
PATH_PREFIX = "/2010-04-01/Accounts/"


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _valid(number: str) -> bool:
    if not number.startswith("+") or number == INVALID_TO:
        return False
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(number, None)))
    except phonenumbers.NumberParseException:
        return False


class TwilioHandler(StandinHandler):
    """Twilio's Messages resource."""

    def fault(self, status: int) -> None:
        """Twilio's error format for an injected status."""
        if status == 429:
            self.reply(429, _error(20429, "Too Many Requests", 429))
        elif status >= 500:
            self.reply(status, _error(20500, "Internal Server Error", status))
        else:
            self.reply(status, _error(20001, "Unknown error", status))

    def _authorised(self, sid: str) -> bool:
        raw = self.headers.get("Authorization", "")
        if not raw.startswith("Basic "):
            return False
        try:
            user, _, token = base64.b64decode(raw[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        config = self.server.config
        return (
            hmac.compare_digest(user, config["sid"])
            and hmac.compare_digest(token, config["token"])
            and hmac.compare_digest(sid, config["sid"])
        )

    def api(self) -> None:
        """``POST .../Accounts/{Sid}/Messages.json``."""
        path = self.path.split("?")[0]
        if not (path.startswith(PATH_PREFIX) and path.endswith("/Messages.json")):
            self.reply(404, _error(20404, "The requested resource was not found", 404))
            return
        sid = path[len(PATH_PREFIX) : -len("/Messages.json")]
        body = self.body()
        if not self._authorised(sid):
            self.reply(401, _error(20003, "Authenticate", 401))
            return
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        to, sender, text = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to:
            self.reply(400, _error(21604, "A 'To' phone number is required.", 400))
        elif not _valid(to):
            self.reply(400, _error(21211, f"The 'To' number {to} is not a valid phone number.", 400))
        elif sender != self.server.config["from"]:
            self.reply(400, _error(21212, f"The 'From' number {sender} is not a valid phone number.", 400))
        elif not text:
            self.reply(400, _error(21602, "Message body is required.", 400))
        else:
            message_sid = "SM" + uuid.uuid4().hex
            now = formatdate(usegmt=True)
            self.server.store.add(
                {
                    "service": "twilio",
                    "sid": message_sid,
                    "to": to,
                    "from": sender,
                    "body": text,
                    "idempotency_token": self.headers.get("I-Twilio-Idempotency-Token", ""),
                    "received_at": time.time(),
                }
            )
            self.reply(
                201,
                {
                    "sid": message_sid,
                    "account_sid": sid,
                    "api_version": "2010-04-01",
                    "to": to,
                    "from": sender,
                    "body": text,
                    "status": "queued",
                    "direction": "outbound-api",
                    "num_segments": "1",
                    "date_created": now,
                    "date_updated": now,
                    "error_code": None,
                    "error_message": None,
                    "price": None,
                    "uri": f"{PATH_PREFIX}{sid}/Messages/{message_sid}.json",
                },
            )


def start(host: str, port: int, store: Store, sid: str, token: str, sender: str) -> StandinServer:
    """A running Twilio stand-in accepting ``sid``:``token`` and messages from ``sender``."""
    return serve(TwilioHandler, host, port, store, {"sid": sid, "token": token, "from": sender})
