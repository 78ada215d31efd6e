"""Channels consumers: thin; they join groups and forward the batched updates the pipeline sends."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dashboard.groups import WHALES_GROUP, market_group


class _GroupConsumer(AsyncJsonWebsocketConsumer):
    """Joins one group on connect and forwards every ``push`` event to the browser."""

    group: str = ""

    def group_name(self) -> str:
        """The group this connection listens to."""
        return self.group

    async def connect(self) -> None:
        self.group = self.group_name()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def push(self, event: dict[str, Any]) -> None:
        """Forward one batched update (``{"type": "push", "payload": {...}}``) to the client."""
        await self.send_json(event["payload"])


class MarketConsumer(_GroupConsumer):
    """``ws/market/<exchange>/<symbol>/``: candles, trade tape and stats for one symbol."""

    def group_name(self) -> str:
        kwargs = self.scope["url_route"]["kwargs"]
        return market_group(kwargs["exchange"], kwargs["symbol"])


class WhaleConsumer(_GroupConsumer):
    """``ws/whales/``: whale alerts from every symbol."""

    group = WHALES_GROUP
