"""The alerts app."""

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """App configuration for ``alerts``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "alerts"
    verbose_name = "Alerts"
