"""A stand-in for the Telegram Bot API's ``sendMessage`` (``POST /bot<token>/sendMessage``, JSON or form).

As Telegram: ``{"ok": true, "result": <Message>}``, or ``{"ok": false, "error_code", "description"}``: 401
"Unauthorized" for another token, 400 "Bad Request: chat not found" (a chat id that is neither an integer nor
``@name``), "Bad Request: message text is empty", 403 "Forbidden: bot was blocked by the user" for the blocked chats,
and 429 "Too Many Requests: retry after N" with ``parameters.retry_after`` on an injected 429.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from typing import Any
from urllib.parse import parse_qs

from simulator.standins.base import StandinHandler, StandinServer, Store, serve

RETRY_AFTER_SECONDS = 3
_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$")


def _error(code: int, description: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error_code": code, "description": description, **extra}


class TelegramHandler(StandinHandler):
    """The Bot API's ``sendMessage``."""

    def fault(self, status: int) -> None:
        """Telegram's error format for an injected status."""
        if status == 429:
            self.reply(
                429,
                _error(
                    429,
                    f"Too Many Requests: retry after {RETRY_AFTER_SECONDS}",
                    parameters={"retry_after": RETRY_AFTER_SECONDS},
                ),
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        elif status >= 500:
            self.reply(status, _error(status, "Internal Server Error"))
        else:
            self.reply(status, _error(status, "Bad Request"))

    def _fields(self, body: bytes) -> dict[str, str]:
        if self.headers.get("Content-Type", "").startswith("application/json"):
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                return {}
            return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}

    def api(self) -> None:
        """``POST /bot<token>/<method>``: only ``sendMessage`` is implemented."""
        path = self.path.split("?")[0]
        body = self.body()
        match = re.fullmatch(r"/bot([^/]+)/(\w+)", path)
        if match is None:
            self.reply(404, _error(404, "Not Found"))
            return
        token, method = match.groups()
        if not hmac.compare_digest(token, self.server.config["token"]):
            self.reply(401, _error(401, "Unauthorized"))
            return
        if method != "sendMessage":
            self.reply(404, _error(404, "Not Found: method not found"))
            return
        fields = self._fields(body)
        chat, text = fields.get("chat_id", ""), fields.get("text", "")
        if not chat:
            self.reply(400, _error(400, "Bad Request: chat_id is empty"))
        elif not _CHAT.match(chat):
            self.reply(400, _error(400, "Bad Request: chat not found"))
        elif chat in self.server.config["blocked"]:
            self.reply(403, _error(403, "Forbidden: bot was blocked by the user"))
        elif not text.strip():
            self.reply(400, _error(400, "Bad Request: message text is empty"))
        elif len(text) > 4096:
            self.reply(400, _error(400, "Bad Request: message is too long"))
        else:
            store = self.server.store
            message_id = len(store.all()) + 1
            now = int(time.time())
            store.add({"service": "telegram", "message_id": message_id, "chat_id": chat, "text": text, "date": now})
            chat_id: int | str = int(chat) if chat.lstrip("-").isdigit() else chat
            self.reply(
                200,
                {
                    "ok": True,
                    "result": {
                        "message_id": message_id,
                        "from": {
                            "id": 1,
                            "is_bot": True,
                            "first_name": "cryptoproject",
                            "username": "cryptoproject_bot",
                        },
                        "chat": {"id": chat_id, "type": "private"},
                        "date": now,
                        "text": text,
                    },
                },
            )


def start(
    host: str, port: int, store: Store, token: str, blocked: frozenset[str] = frozenset({"666"})
) -> StandinServer:
    """A running Telegram stand-in accepting ``token``; messages to ``blocked`` chats get 403."""
    return serve(TelegramHandler, host, port, store, {"token": token, "blocked": blocked})
