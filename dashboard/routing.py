"""WebSocket URL routes, mounted by ``cryptoproject.asgi`` behind the origin validator and auth middleware."""

from django.urls import path, re_path

from dashboard import consumers

websocket_urlpatterns = [
    # ``path``: Kraken symbols carry a slash (BTC/USD); the consumer validates the charset.
    path("ws/market/<str:exchange>/<path:symbol>/", consumers.MarketConsumer.as_asgi()),
    path("ws/whales/", consumers.WhaleConsumer.as_asgi()),
    path("ws/overview/", consumers.OverviewConsumer.as_asgi()),
    # Anything else is closed with 4404, instead of URLRouter's "No route found" exception (a server error).
    re_path(r"", consumers.NotFoundConsumer.as_asgi()),
]
