"""The simulator app: test tooling (local exchange, replay, recorder) one layer above ingest."""

from django.apps import AppConfig


class SimulatorAppConfig(AppConfig):
    """App configuration for ``simulator`` (``SimulatorConfig`` is the simulator's run options, not this)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "simulator"
    verbose_name = "Exchange simulator"
