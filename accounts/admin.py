"""Admin for invitations (staff create them here or on /accounts/invitations/), API tokens (read-only, revocable)
and watchlists. No secret is ever shown: only hashes are stored, and a new invitation's link is shown once."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils import timezone

from accounts import signup
from accounts.models import ApiToken, Invitation, WatchlistItem


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations; adding one mails its link to the address and shows it once."""

    list_display = ("email", "created_by", "created_at", "expires_at", "used_at", "used_by")
    search_fields = ("email",)
    ordering = ("-id",)
    fields = ("email",)
    actions = ["expire_now"]

    def has_change_permission(self, request: HttpRequest, obj: Invitation | None = None) -> bool:
        """Invitations are created and expired, never edited."""
        return False

    def save_model(self, request: HttpRequest, obj: Invitation, form: ModelForm[Any], change: bool) -> None:
        """Create it with a fresh token (stored hashed), mail the link and show it to the staff member once."""
        created, token = signup.create_invitation(obj.email, request.user)
        obj.pk = created.pk
        signup.send_invitation(request, created, token)
        messages.success(
            request, f"Invitation mailed to {created.email}. Link (shown once): {signup.invitation_url(request, token)}"
        )

    @admin.action(description="Expire the selected invitations now")
    def expire_now(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        """Make unused invitations unusable."""
        count = queryset.filter(used_at__isnull=True).update(expires_at=timezone.now())
        messages.success(request, f"{count} invitation(s) expired.")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens by prefix (the secret is not stored); staff can revoke them."""

    list_display = ("prefix", "name", "owner", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_select_related = ("owner",)
    search_fields = ("prefix", "name", "owner__username")
    readonly_fields = ("owner", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at")
    exclude = ("key_hash",)
    ordering = ("-id",)
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Users create their own tokens (the secret is shown to them only)."""
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        """Revoke the tokens not revoked yet."""
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        messages.success(request, f"{count} token(s) revoked.")


@admin.register(WatchlistItem)
class WatchlistItemAdmin(admin.ModelAdmin):
    """Watchlist entries, by user and position."""

    list_display = ("owner", "position", "exchange", "symbol")
    list_select_related = ("owner",)
    search_fields = ("owner__username", "symbol")
    ordering = ("owner", "position")
