"""Dashboard page URLs."""

from django.urls import path

from dashboard import me, views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("me/", me.me, name="me"),
    # ``path``: Kraken symbols carry a slash (BTC/USD); the view validates the charset.
    path("market/<str:exchange>/<path:symbol>/", views.symbol, name="symbol"),
    path("whales/", views.whales, name="whales"),
    path("health/", views.health, name="health"),
    path("models/", views.models, name="models"),
    path("backtests/", views.backtests, name="backtests"),
    path("backtests/<int:run_id>/", views.backtest, name="backtest"),
]
