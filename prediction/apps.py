"""The prediction app's configuration."""

from django.apps import AppConfig


class PredictionConfig(AppConfig):
    """The ``prediction`` app, "Price prediction" in the admin; its models get 64-bit ids."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "prediction"
    verbose_name = "Price prediction"

    def ready(self) -> None:
        """Connect the live-inference signal handler (:mod:`prediction.signals`)."""
        from prediction import signals  # noqa: F401  (connects the live-inference hook)
