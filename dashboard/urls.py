"""Dashboard page URLs."""

from django.urls import path

from dashboard import alert_views, me, views

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
    path("alerts/", alert_views.rules, name="alert-rules"),
    path("alerts/<int:rule_id>/", alert_views.rule_edit, name="alert-rule"),
    path("alerts/<int:rule_id>/delete/", alert_views.rule_delete, name="alert-rule-delete"),
    path("alerts/recent/", alert_views.recent_alerts, name="alerts-recent"),
    path("alerts/destinations/", alert_views.destinations, name="alert-destinations"),
    path(
        "alerts/destinations/<int:destination_id>/delete/",
        alert_views.destination_delete,
        name="alert-destination-delete",
    ),
    path("notifications/", alert_views.notifications, name="notifications"),
]
