"""The analytics app."""

from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    """App configuration for ``analytics``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "analytics"
    verbose_name = "Analytics"
