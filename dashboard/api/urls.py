"""REST API v1 URLs (mounted at ``/api/v1/``), the OpenAPI schema and its browsable docs."""

from django.urls import URLPattern, URLResolver, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from dashboard.api import accounts, alerts, backtests, books, predictions, views
from dashboard.auth import LoginRequiredIfConfigured

app_name = "api"

_docs_permissions = [LoginRequiredIfConfigured]

urlpatterns: list[URLPattern | URLResolver] = [
    path("trades", views.TradesView.as_view(), name="trades"),
    path("candles", views.CandlesView.as_view(), name="candles"),
    path("indicators", views.IndicatorsView.as_view(), name="indicators"),
    path("whales", views.WhalesView.as_view(), name="whales"),
    path("stats", views.StatsView.as_view(), name="stats"),
    path("symbols", views.SymbolsView.as_view(), name="symbols"),
    path("health", views.HealthView.as_view(), name="health"),
    path("book", books.BookView.as_view(), name="book"),
    path("book/metrics", books.BookMetricsView.as_view(), name="book-metrics"),
    path("backtests", backtests.BacktestsView.as_view(), name="backtests"),
    path("backtests/strategies", backtests.StrategiesView.as_view(), name="backtest-strategies"),
    path("backtests/<int:run_id>", backtests.BacktestView.as_view(), name="backtest"),
    path("backtests/<int:run_id>/chart", backtests.BacktestChartView.as_view(), name="backtest-chart"),
    path("models", predictions.ModelsView.as_view(), name="models"),
    path("models/<int:model_id>", predictions.ModelView.as_view(), name="model"),
    path("predictions", predictions.PredictionsView.as_view(), name="predictions"),
    path("tokens", accounts.TokensView.as_view(), name="tokens"),
    path("tokens/<int:token_id>", accounts.TokenView.as_view(), name="token"),
    path("watchlist", accounts.WatchlistView.as_view(), name="watchlist"),
    path("alert-rules", alerts.AlertRulesView.as_view(), name="alert-rules"),
    path("alert-rules/<int:rule_id>", alerts.AlertRuleView.as_view(), name="alert-rule"),
    path("alerts", alerts.AlertsView.as_view(), name="alerts"),
    path("destinations", alerts.DestinationsView.as_view(), name="destinations"),
    path("destinations/<int:destination_id>", alerts.DestinationView.as_view(), name="destination"),
    path("notifications", alerts.NotificationsView.as_view(), name="notifications"),
    path("notifications/read", alerts.NotificationsReadView.as_view(), name="notifications-read"),
    path("schema", SpectacularAPIView.as_view(permission_classes=_docs_permissions), name="schema"),
    path(
        "docs",
        # The split view: its start-up script is a URL of its own (?script), not inline, for the CSP.
        SpectacularSwaggerSplitView.as_view(url_name="api:schema", permission_classes=_docs_permissions),
        name="docs",
    ),
    path(
        "redoc",
        SpectacularRedocView.as_view(url_name="api:schema", permission_classes=_docs_permissions),
        name="redoc",
    ),
]
