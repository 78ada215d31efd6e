"""The model registry (one row per trained model) and the live predictions it makes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now

from analytics.models import Interval

# The naive baselines every model is reported against (prediction.learn fits them).
BASELINES = ("always_up", "persistence", "majority")


class PredictionModel(models.Model):
    """One trained model: what it predicts, on which data, how it did out of sample, and where its file is.

    ``folds`` holds the walk-forward report of ``prediction.walkforward`` (model and baselines per fold),
    ``overall`` the pooled out-of-sample metrics, ``backtest`` the trading evaluation of its signals. At most one
    row per (exchange, symbol, interval, horizon) is ``active``: the one live inference uses.
    """

    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    interval = models.CharField(max_length=4, choices=Interval.choices)
    horizon = models.PositiveSmallIntegerField(default=1, help_text="Bars ahead the target looks.")
    features = models.JSONField(default=list, help_text="Feature names, in the model's column order.")
    params = models.JSONField(default=dict, help_text="Hyper-parameters, seed and threshold.")
    train_from = models.DateTimeField(help_text="open_time of the first bar used.")
    train_to = models.DateTimeField(help_text="open_time of the last bar used.")
    n_bars = models.PositiveIntegerField()
    data_hash = models.CharField(max_length=64, help_text="sha256 of the stored candles used, as text.")
    folds = models.JSONField(default=list)
    overall = models.JSONField(default=dict)
    backtest = models.JSONField(default=dict)
    artifact = models.CharField(max_length=500, help_text="Path of the joblib file of the fitted pipelines.")
    training_seconds = models.FloatField(null=True, blank=True)
    # Null: shared (made by a command, the demo or the beat schedule); else only its owner and staff see it.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="prediction_models"
    )
    created_at = models.DateTimeField(db_default=Now())
    active = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["exchange", "symbol", "interval", "horizon"],
                condition=models.Q(active=True),
                name="prediction_one_active_model",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.exchange}:{self.symbol} {self.interval} h={self.horizon}"


class Prediction(models.Model):
    """P(up) for one bar, made by ``model`` once the bar ``horizon`` bars before it closed.

    ``base_close`` is that bar's close; once the predicted bar closes, ``actual_close`` and ``correct`` are set
    (scored), so the realised accuracy of the latest predictions is a plain query.
    """

    model = models.ForeignKey(PredictionModel, on_delete=models.CASCADE, related_name="predictions")
    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    open_time = models.DateTimeField(help_text="open_time of the bar predicted.")
    base_time = models.DateTimeField(help_text="open_time of the last closed bar the features used.")
    p_up = models.FloatField()
    predicted_return = models.FloatField()
    base_close = models.FloatField()
    actual_close = models.FloatField(null=True, blank=True)
    correct = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "open_time"], name="prediction_model_bar")]
        indexes = [models.Index(fields=["exchange", "symbol", "-open_time"], name="prediction_symbol_time")]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol} {self.open_time:%Y-%m-%d %H:%M} P(up)={self.p_up:.3f}"
