from django.apps import AppConfig


class PredictionConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "prediction"
    verbose_name = "Price prediction"

    def ready(self) -> None:
        from prediction import signals  # noqa: F401  (connects the live-inference hook)
