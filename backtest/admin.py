"""Backtest runs in the admin: read-only results, searchable by strategy and market."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from backtest.models import BacktestRun


@admin.register(BacktestRun)
class BacktestRunAdmin(admin.ModelAdmin):
    """Stored runs, read-mostly: created from the dashboard, the API or ``manage.py backtest``, never here."""

    list_display = (
        "id",
        "strategy",
        "exchange",
        "symbol",
        "interval",
        "date_from",
        "date_to",
        "status",
        "total_return",
        "sharpe",
        "bars",
        "owner_name",
        "created_at",
    )
    # Only the users who own runs (not every account) are offered; "-" is the shared runs (no owner).
    list_filter = ("status", "strategy", "exchange", "interval", ("owner", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("owner",)
    search_fields = ("strategy", "symbol", "bars_hash")
    ordering = ("-created_at", "-id")
    exclude = ("equity", "trades")  # tens of thousands of points: the run page draws them
    readonly_fields = ("page", "bars_hash", "metrics", "progress", "started_at", "finished_at", "created_at")

    @admin.display(description="total return")
    def total_return(self, run: BacktestRun) -> str:
        """The run's total return as a signed percentage; an em dash until it has metrics."""
        value = run.metrics.get("total_return")
        return "—" if value is None else f"{value:+.2%}"

    @admin.display(description="Sharpe")
    def sharpe(self, run: BacktestRun) -> str:
        """The run's Sharpe ratio to two decimals; an em dash until it has metrics."""
        value = run.metrics.get("sharpe")
        return "—" if value is None else f"{value:.2f}"

    @admin.display(description="owner", ordering="owner__username", empty_value="shared")
    def owner_name(self, run: BacktestRun) -> str | None:
        """The run's owner; "shared" when it has none (the demo's, a command's, an anonymous visitor's)."""
        return None if run.owner is None else run.owner.get_username()

    @admin.display(description="run page")
    def page(self, run: BacktestRun) -> str:
        """A link to the run's dashboard page."""
        return format_html('<a href="{}">open</a>', reverse("dashboard:backtest", args=[run.pk]))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Always False: runs are started elsewhere (see the class docstring)."""
        return False  # runs are started from the dashboard form, the API or manage.py backtest
