"""Channels consumers: thin; they check the caller, join a group and forward the batched updates the pipeline sends.

Pushes are batched and throttled upstream (``analytics.live``): a consumer never aggregates, it forwards each
``{"type": "push", "payload": {...}}`` event's payload unchanged. The sockets are one-way: a JSON frame from the
client is ignored, a binary or non-JSON one gets an error frame (and is counted), and none of them raises.

A signed-in socket also joins its session's group (:func:`session_group`): logging out sends ``session.logout``
there (:mod:`dashboard.signals`), and every socket of that session closes with ``CLOSE_UNAUTHENTICATED``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from analytics.groups import OVERVIEW_GROUP, WHALES_GROUP, InvalidMarketError, market_group, parse_market
from cryptoproject.sockets import CLOSE_UNAUTHENTICATED, session_group

logger = logging.getLogger(__name__)

# Application close codes (4000-4999): the browser's reconnect logic stops retrying on these.
CLOSE_BAD_MARKET = 4404


def _frame_error(message: str) -> dict[str, Any]:
    return {"error": {"code": "invalid_frame", "message": message}}


class _GroupConsumer(AsyncJsonWebsocketConsumer):
    """Joins one group on connect and forwards every ``push`` event to the browser."""

    group: str = ""
    session: str = ""
    invalid_frames: int = 0

    def group_name(self) -> str:
        """The group this connection listens to; raises ``InvalidMarketError`` for bad URL parameters."""
        return self.group

    async def connect(self) -> None:
        user = self.scope.get("user")
        if settings.DASHBOARD_LOGIN_REQUIRED and not (user is not None and user.is_authenticated):
            logger.info("websocket refused: login required", extra={"path": self.scope.get("path")})
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        try:
            self.group = self.group_name()
        except InvalidMarketError as exc:
            logger.info("websocket refused: bad market", extra={"path": self.scope.get("path"), "reason": str(exc)})
            self.group = ""
            await self.close(code=CLOSE_BAD_MARKET)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        session_key = getattr(self.scope.get("session"), "session_key", None)
        if user is not None and user.is_authenticated and session_key:
            self.session = session_group(session_key)
            await self.channel_layer.group_add(self.session, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in (self.group, self.session):
            if group:
                await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """The sockets are one-way (server to browser): a JSON frame is ignored; a binary or non-JSON frame gets an
        error frame back and is counted (logged once per socket), and the socket stays open. Never raises."""
        if text_data is None:
            await self._invalid_frame("binary frames are not accepted; this socket only sends")
            return
        try:
            json.loads(text_data)
        except ValueError:
            await self._invalid_frame("frames must be JSON; this socket only sends")

    async def _invalid_frame(self, message: str) -> None:
        self.invalid_frames += 1
        if self.invalid_frames == 1:
            logger.info("websocket: invalid client frame", extra={"path": str(self.scope.get("path"))[:200]})
        await self.send_json(_frame_error(message))

    async def session_logout(self, event: dict[str, Any]) -> None:
        """The session logged out (``session.logout``): close with ``CLOSE_UNAUTHENTICATED``."""
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def push(self, event: dict[str, Any]) -> None:
        """Forward one batched update (``{"type": "push", "payload": {...}}``) to the client."""
        await self.send_json(event["payload"])


class MarketConsumer(_GroupConsumer):
    """``ws/market/<exchange>/<symbol>/``: candles, trade tape, stats and whales for one symbol."""

    def group_name(self) -> str:
        """The symbol's market group; raises ``InvalidMarketError`` for an unknown exchange or bad symbol."""
        kwargs = self.scope["url_route"]["kwargs"]
        return market_group(*parse_market(kwargs["exchange"], kwargs["symbol"]))


class WhaleConsumer(_GroupConsumer):
    """``ws/whales/``: whale alerts from every symbol."""

    group = WHALES_GROUP


class OverviewConsumer(_GroupConsumer):
    """``ws/overview/``: the 24h stats of every symbol, for the overview tiles."""

    group = OVERVIEW_GROUP


class NotFoundConsumer(AsyncJsonWebsocketConsumer):
    """Any other WebSocket path: refused with ``CLOSE_BAD_MARKET`` (4404), the socket's "not found"."""

    async def connect(self) -> None:
        """Close the handshake with 4404, logging the (truncated) path."""
        logger.info("websocket refused: no such route", extra={"path": str(self.scope.get("path"))[:200]})
        await self.close(code=CLOSE_BAD_MARKET)
