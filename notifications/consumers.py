"""``ws/notifications/``: a signed-in user's toasts, pushed by the in-app channel (``notifications.channels.in_app``).

Per user, so always behind login (whatever ``DASHBOARD_LOGIN_REQUIRED`` says): an anonymous socket is closed with
4401. One-way: whatever the browser sends (text, JSON or binary) is ignored.
"""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from notifications.groups import user_group

CLOSE_UNAUTHENTICATED = 4401


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    """Joins the user's group and forwards every ``push`` event's payload (``{"toast": {...}}``)."""

    group = ""

    async def connect(self) -> None:
        """Accept a signed-in user only."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Leave the group."""
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Ignore anything the client sends (never decoded, so a bad frame cannot raise)."""

    async def push(self, event: dict[str, Any]) -> None:
        """Forward one toast to the browser."""
        await self.send_json(event["payload"])
