"""Admin for destinations, the delivery outbox and in-app notifications: read-mostly; staff who are not superusers
see only their own."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from analytics.paginators import EstimatedCountPaginator
from cryptoproject.owned_admin import OwnRowsAdmin
from notifications.models import CircuitBreaker, Delivery, Destination, Notification


@admin.register(Destination)
class DestinationAdmin(OwnRowsAdmin):
    """Destinations: only ``active`` can be changed here; the secret is never shown."""

    list_display = ("id", "owner", "kind", "target", "format", "active", "created_at")
    list_filter = ("kind", "active")
    search_fields = ("target", "owner__username")
    list_select_related = ("owner",)
    ordering = ("-id",)
    fields = ("owner", "kind", "target", "format", "active", "created_at")
    readonly_fields = ("owner", "kind", "target", "format", "created_at")


@admin.register(Delivery)
class DeliveryAdmin(OwnRowsAdmin):
    """The outbox: what is sent to whom, attempts, the last error (written by the senders only)."""

    owner_path = "destination__owner"
    list_display = ("created_at", "key", "kind", "status", "attempts", "next_attempt_at", "sent_at", "last_error")
    list_filter = ("status", "kind")
    search_fields = ("key",)
    ordering = ("-id",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    sortable_by = ()
    actions = None

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Always False: the senders own these rows."""
        return False


@admin.register(Notification)
class NotificationAdmin(OwnRowsAdmin):
    """In-app notifications (read-only)."""

    list_display = ("created_at", "owner", "subject", "read_at")
    list_filter = ("read_at",)
    search_fields = ("subject", "owner__username")
    list_select_related = ("owner",)
    ordering = ("-id",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    sortable_by = ()
    actions = None

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Always False: a record of what was shown."""
        return False


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(admin.ModelAdmin):
    """Each target's breaker (read-only: the senders alone write it)."""

    list_display = ("target", "failures", "open_until", "probe_until", "updated_at")
    ordering = ("target",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """No hand-made rows."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """No hand edits."""
        return False
