"""Channels consumers: thin; they check the caller, join a group and forward the batched updates the pipeline sends.

Pushes are batched and throttled upstream (``analytics.live``): a consumer never aggregates, it forwards each
``{"type": "push", "payload": {...}}`` event's payload unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from analytics.groups import OVERVIEW_GROUP, WHALES_GROUP, InvalidMarketError, market_group, parse_market

logger = logging.getLogger(__name__)

# Application close codes (4000-4999): the browser's reconnect logic stops retrying on these.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_MARKET = 4404


class _GroupConsumer(AsyncJsonWebsocketConsumer):
    """Joins one group on connect and forwards every ``push`` event to the browser."""

    group: str = ""

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
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The sockets are one-way (server to browser): anything the client sends is ignored."""

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
