"""The dashboard app."""

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """App configuration for ``dashboard``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        """Register the deploy checks of :mod:`dashboard.checks` and the receivers of :mod:`dashboard.signals`."""
        from dashboard import checks, signals  # noqa: F401 - registers the deploy checks and the receivers
