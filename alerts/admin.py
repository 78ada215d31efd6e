"""Admin for alert rules and their alerts: read-mostly (users write rules through the pages and the API, where
they are validated); staff who are not superusers see only their own."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from alerts.models import Alert, AlertRule
from analytics.paginators import EstimatedCountPaginator
from cryptoproject.owned_admin import OwnRowsAdmin


@admin.register(AlertRule)
class AlertRuleAdmin(OwnRowsAdmin):
    """Rules: only ``active`` can be changed here (pause a noisy rule); the rest is validated by the API/pages."""

    list_display = ("id", "owner", "kind", "exchange", "symbol", "params", "channels", "cooldown_s", "active")
    list_filter = ("kind", "active", "exchange")
    search_fields = ("symbol", "owner__username")
    list_select_related = ("owner",)
    ordering = ("-id",)
    shown = (
        "owner",
        "kind",
        "exchange",
        "symbol",
        "params",
        "channels",
        "destinations",
        "cooldown_s",
        "active",
        "created_at",
        "updated_at",
        "last_fired_ms",
        "suppressed",
    )
    fields = shown
    readonly_fields = tuple(f for f in shown if f != "active")


@admin.register(Alert)
class AlertAdmin(OwnRowsAdmin):
    """Firings: a read-only record."""

    owner_path = "rule__owner"
    list_display = ("fired_at", "kind", "exchange", "symbol", "trigger", "price", "traded_at", "rule")
    list_filter = ("kind", "exchange")
    search_fields = ("symbol", "trigger")
    list_select_related = ("rule",)
    ordering = ("-id",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    sortable_by = ()
    actions = None

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Always False: what fired is a record."""
        return False
