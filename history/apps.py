"""The history app: imports the exchange's public archive (klines, trades) into the analytics tables."""

from django.apps import AppConfig


class HistoryConfig(AppConfig):
    """App configuration for ``history`` (no models: it writes ``analytics``' candles and trades)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "history"
    verbose_name = "History import"
