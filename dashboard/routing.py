"""WebSocket URL routes, mounted by ``cryptoproject.asgi`` behind the origin validator and auth middleware."""

from django.urls import path

from dashboard import consumers

websocket_urlpatterns = [
    path("ws/market/<str:exchange>/<str:symbol>/", consumers.MarketConsumer.as_asgi()),
    path("ws/whales/", consumers.WhaleConsumer.as_asgi()),
]
