"""A hard limit on request bodies (``REQUEST_BODY_MAX_BYTES``), answered with a 413 JSON error.

Django checks ``DATA_UPLOAD_MAX_MEMORY_SIZE`` only when a view reads ``request.body`` or a form with a
``Content-Length``; DRF's JSON parser reads the stream instead and never meets that check, and under ASGI a chunked
body (no ``Content-Length``) is read whole into a spooled file before any view runs. So the limit is enforced twice,
before Django sees the request:

- :class:`BodyLimitASGIMiddleware` wraps the ASGI application (daphne): a declared length over the limit is refused
  before a byte is read, and a body without one is counted as it arrives and cut off once it passes the limit;
- :class:`BodyLimitMiddleware`, the first Django middleware, refuses a declared length over the limit under any
  handler (WSGI, the test client).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]
STATUS = 413


def too_large_body(limit: int) -> bytes:
    """The 413 body, in the API's error envelope (``{"error": {"param", "message", "code"}}``)."""
    message = f"the request body is larger than {limit} bytes"
    return json.dumps({"error": {"param": None, "message": message, "code": "request_too_large"}}).encode()


def _declared_length(value: str | bytes | None) -> int | None:
    """A ``Content-Length`` of ASCII digits, else ``None`` (Django answers a malformed one itself)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _log(path: str, size: int | None, limit: int) -> None:
    logger.warning("request body over the limit refused", extra={"path": path[:200], "size": size, "limit": limit})


class BodyLimitMiddleware:
    """Django middleware: 413 for a declared ``Content-Length`` over ``REQUEST_BODY_MAX_BYTES``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Refuse before anything reads the body; pass everything else on."""
        limit = int(settings.REQUEST_BODY_MAX_BYTES)
        size = _declared_length(request.META.get("CONTENT_LENGTH"))
        if size is not None and size > limit:
            _log(request.path, size, limit)
            return HttpResponse(too_large_body(limit), status=STATUS, content_type="application/json")
        return self.get_response(request)


class BodyLimitASGIMiddleware:
    """ASGI middleware around the HTTP application: bodies over ``REQUEST_BODY_MAX_BYTES`` never reach Django.

    The body is read here (up to the limit, which Django would buffer anyway) and handed on unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass non-HTTP scopes through; for HTTP, read and count the body, then replay it to the application."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = int(settings.REQUEST_BODY_MAX_BYTES)
        path = str(scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        declared = _declared_length(headers.get(b"content-length"))
        if declared is not None and declared > limit:
            _log(path, declared, limit)
            await self._refuse(send, limit)
            return
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break  # the client went away: let the application see it
            size += len(message.get("body", b""))
            if size > limit:
                _log(path, None, limit)
                await self._refuse(send, limit)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = too_large_body(limit)
        await send(
            {
                "type": "http.response.start",
                "status": STATUS,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
