"""Stored backtest runs: what was run on which data, and what came out."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models.functions import Now

from analytics.models import Interval


class BacktestRun(models.Model):
    """One backtest: strategy, parameters, data range and a hash of the bars used, then metrics and the curves.

    Created ``pending`` by the dashboard form or the API, run by the ``backtest.tasks.run_backtest`` task (or
    created ``done`` by ``manage.py backtest``). ``progress`` goes from 0 to 1 while it runs.
    """

    class Status(models.TextChoices):
        """pending -> running -> done or failed; done and failed are final (a finished run is never re-run)."""

        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    strategy = models.CharField(max_length=64)
    params = models.JSONField(default=dict, help_text="The parameters after defaults were applied.")
    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    interval = models.CharField(max_length=4, choices=Interval.choices)
    date_from = models.DateField(help_text="First day (UTC) of the bars, inclusive.")
    date_to = models.DateField(help_text="Last day (UTC) of the bars, inclusive.")
    cash = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("10000"))
    fee = models.DecimalField(max_digits=8, decimal_places=6, default=Decimal("0.001"))
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    bars = models.PositiveIntegerField(null=True, blank=True, help_text="How many bars the run used.")
    bars_hash = models.CharField(max_length=64, blank=True, help_text="sha256 of the stored bars used, as text.")
    first_open_time = models.DateTimeField(null=True, blank=True)
    last_open_time = models.DateTimeField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    equity = models.JSONField(default=list, blank=True, help_text="[[open_time_ms, equity], ...]")
    trades = models.JSONField(default=list, blank=True)
    # Null: shared (made by a command, the demo or the beat schedule, or an anonymous visitor of an open dashboard:
    # one shared BACKTEST_MAX_CONCURRENT_PER_USER budget); else only its owner and staff see it, and it counts
    # against its owner's budget.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="backtest_runs"
    )
    created_at = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="backtest_run_newest"),
            # The per-user cap counts a user's runs still waiting or running: a small partial index.
            models.Index(
                fields=["owner", "created_at"],
                name="backtest_run_unfinished",
                condition=models.Q(status__in=["pending", "running"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(date_from__lte=models.F("date_to")), name="backtest_range"),
        ]

    def __str__(self) -> str:
        return f"{self.strategy} {self.exchange}:{self.symbol} {self.interval} {self.date_from}..{self.date_to}"
