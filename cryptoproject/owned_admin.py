"""The admin base of the per-user tables (alert rules, alerts, destinations, deliveries, notifications): every row
for a superuser, only the requesting user's own for other staff, and nothing added by hand (the pages, the API and
the code that writes these rows validate them)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest


class OwnRowsAdmin(admin.ModelAdmin):
    """Every row for a superuser, only the requesting user's own for other staff; nothing added here."""

    #: the lookup from a row to its owner's id
    owner_path = "owner"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        """Every row for a superuser; only the requesting user's own for other staff."""
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(**{self.owner_path: request.user.pk})

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Always False: rows are created by the pages, the API or the code, which validate them."""
        return False
