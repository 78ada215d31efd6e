"""The books app."""

from django.apps import AppConfig


class BooksConfig(AppConfig):
    """App configuration for ``books``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "books"
    verbose_name = "Order books"

    def ready(self) -> None:
        """Plug the books channel into ``manage.py ingest`` (ingest is below books and never imports it)."""
        from books.stream import register_channel

        register_channel()
