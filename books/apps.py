"""The books app."""

from django.apps import AppConfig


class BooksConfig(AppConfig):
    """App configuration for ``books``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "books"
    verbose_name = "Order books"
