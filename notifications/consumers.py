"""``ws/notifications/``: a signed-in user's toasts, pushed by the in-app channel (``notifications.channels.in_app``).

Per user, so always behind login (whatever ``DASHBOARD_LOGIN_REQUIRED`` says): an anonymous socket is closed with
4401, and so is one whose session logs out (it joins the session's group, :mod:`cryptoproject.sockets`). One-way:
whatever the browser sends (text, JSON or binary) is ignored.
"""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from cryptoproject.sockets import CLOSE_UNAUTHENTICATED, session_group
from notifications.groups import user_group

__all__ = ["CLOSE_UNAUTHENTICATED", "NotificationConsumer"]


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    """Joins the user's group and forwards every ``push`` event's payload (``{"toast": {...}}``)."""

    group = ""
    session = ""

    async def connect(self) -> None:
        """Accept a signed-in user only; join the user's group and the login session's."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        session_key = getattr(self.scope.get("session"), "session_key", None)
        if session_key:
            self.session = session_group(session_key)
            await self.channel_layer.group_add(self.session, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Leave the groups."""
        for group in (self.group, self.session):
            if group:
                await self.channel_layer.group_discard(group, self.channel_name)

    async def session_logout(self, event: dict[str, Any]) -> None:
        """The session logged out (``session.logout``): close with ``CLOSE_UNAUTHENTICATED``."""
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Ignore anything the client sends (never decoded, so a bad frame cannot raise)."""

    async def push(self, event: dict[str, Any]) -> None:
        """Forward one toast to the browser."""
        await self.send_json(event["payload"])
