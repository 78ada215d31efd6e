"""The notifications app's WebSocket routes (wired in by cryptoproject.asgi, ahead of the dashboard's)."""

from __future__ import annotations

from django.urls import path

from notifications.consumers import NotificationConsumer

websocket_urlpatterns = [
    path("ws/notifications/", NotificationConsumer.as_asgi()),
]
