"""The notifications app."""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """App configuration for ``notifications``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"
    verbose_name = "Notifications"
