"""Admin for whale-alert subscriptions (users manage their own) and their deliveries (read-only record)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from analytics.paginators import EstimatedCountPaginator
from dashboard.models import AlertDelivery, AlertSubscription


@admin.register(AlertSubscription)
class AlertSubscriptionAdmin(admin.ModelAdmin):
    """Subscriptions; staff who are not superusers see and edit only their own.

    Saving runs the model's ``clean()``: webhook hosts in private, loopback, link-local or reserved ranges are
    refused unless ``ALERT_WEBHOOK_ALLOW_PRIVATE`` is true.
    """

    list_display = ("user", "exchange", "symbol", "min_notional", "channel", "format", "target", "active", "created_at")
    list_filter = ("channel", "active", "exchange")
    search_fields = ("symbol", "target", "user__username")
    ordering = ("-id",)
    list_select_related = ("user",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertSubscription]:
        """Every subscription for a superuser; only the requesting user's own for other staff."""
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user.pk)

    def get_exclude(self, request: HttpRequest, obj: AlertSubscription | None = None) -> list[str]:
        """Other staff do not see the ``user`` field: their subscriptions are always their own."""
        return [] if request.user.is_superuser else ["user"]

    def save_model(self, request: HttpRequest, obj: AlertSubscription, form: ModelForm[Any], change: bool) -> None:
        """Save, owned by the requesting user unless a superuser set an owner."""
        if not request.user.is_superuser or not obj.user_id:
            obj.user = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    """What was sent to whom, how many attempts it took and the last error: written by the delivery tasks only."""

    list_display = ("created_at", "alert", "subscription", "status", "attempts", "sent_at", "last_error")
    list_filter = ("status",)
    list_select_related = ("alert", "subscription")
    ordering = ("-id",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    sortable_by = ()
    actions = None

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertDelivery]:
        """Every delivery for a superuser; only those of the requesting user's subscriptions for other staff."""
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(subscription__user=request.user.pk)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Always False: deliveries are written by the delivery tasks only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: AlertDelivery | None = None) -> bool:
        """Always False: the record of what was sent is read-only."""
        return False
