"""The ingest app."""

from django.apps import AppConfig


class IngestConfig(AppConfig):
    """App configuration for ``ingest``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "ingest"
    verbose_name = "Ingest"
