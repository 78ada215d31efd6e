"""Admin: destinations (targets validated per channel), and the outbox, breakers and notifications as a read-only
record (the sender alone writes them)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms import ModelForm
from django.http import HttpRequest

from notifications.models import CircuitBreaker, Delivery, Destination, Notification
from notifications.validation import validate_target


class DestinationForm(ModelForm):
    """Validates the target for its channel kind."""

    class Meta:
        model = Destination
        fields = ("owner", "kind", "target", "format", "secret", "active")

    def clean(self) -> dict[str, Any]:
        """Normalise the target (E.164, ...) or name what is wrong with it."""
        data = super().clean() or {}
        try:
            data["target"] = validate_target(str(data.get("kind", "")), str(data.get("target", "")))
        except ValidationError as exc:
            self.add_error("target", exc)
        return data


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    """Where users receive messages."""

    form = DestinationForm
    list_display = ("owner", "kind", "target", "format", "active", "created_at")
    list_filter = ("kind", "active")
    search_fields = ("target", "owner__username")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Listed and inspected, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        """No hand-made rows."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """No hand edits."""
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    """The outbox."""

    list_display = ("key", "kind", "status", "attempts", "next_attempt_at", "last_error", "sent_at")
    list_filter = ("status", "kind")
    search_fields = ("key",)
    list_select_related = ("destination",)


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(ReadOnlyAdmin):
    """Each target's breaker."""

    list_display = ("target", "failures", "open_until", "probe_until", "updated_at")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """In-app notifications."""

    list_display = ("owner", "subject", "created_at", "read_at")
    search_fields = ("subject", "owner__username")
