"""The backtest app's configuration."""

from django.apps import AppConfig


class BacktestConfig(AppConfig):
    """The ``backtest`` app, "Backtests" in the admin; its models get 64-bit ids."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "backtest"
    verbose_name = "Backtests"
