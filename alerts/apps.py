"""The alerts app."""

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """App configuration for ``alerts``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        """Evaluate the rules on every batch the consumer stores, inside its transaction (alerts.wiring)."""
        from alerts import wiring
        from analytics.signals import consumer_reassigned, trades_stored

        trades_stored.connect(wiring.on_trades_stored, dispatch_uid="alerts.evaluate")
        consumer_reassigned.connect(wiring.mark_stale, dispatch_uid="alerts.reassigned")
