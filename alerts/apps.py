"""The alerts app."""

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """App configuration for ``alerts``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        """Evaluate the rules on every batch the consumer stores and every candle update, inside their
        transactions (alerts.wiring, alerts.candle_kinds)."""
        from alerts import candle_kinds, wiring
        from analytics.signals import consumer_reassigned, series_updated, trades_stored, trades_storing

        trades_storing.connect(wiring.on_trades_storing, dispatch_uid="alerts.wanted")
        trades_stored.connect(wiring.on_trades_stored, dispatch_uid="alerts.evaluate")
        consumer_reassigned.connect(wiring.mark_stale, dispatch_uid="alerts.reassigned")
        series_updated.connect(candle_kinds.on_series_updated, dispatch_uid="alerts.candles")
