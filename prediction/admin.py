"""Trained models in the admin: read-only (training makes them and activates the newest), with their owner
(none: shared) as a column and a filter."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from prediction.models import PredictionModel


@admin.register(PredictionModel)
class PredictionModelAdmin(admin.ModelAdmin):
    """The model registry, view-only. The artifact's path is not shown (users never see it; staff need not)."""

    list_display = (
        "id",
        "exchange",
        "symbol",
        "interval",
        "horizon",
        "n_bars",
        "active",
        "owner_name",
        "created_at",
    )
    # Only the users who own models (not every account) are offered; "-" is the shared models (no owner).
    list_filter = ("active", "exchange", "interval", ("owner", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("owner",)
    search_fields = ("symbol", "data_hash")
    ordering = ("-created_at", "-id")
    exclude = ("artifact", "folds")  # the path stays server-side; the folds are the API's model report

    @admin.display(description="owner", ordering="owner__username", empty_value="shared")
    def owner_name(self, model: PredictionModel) -> str | None:
        """The model's owner; "shared" when it has none (made by a command, the demo or the beat schedule)."""
        return None if model.owner is None else model.owner.get_username()

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Always False: models come from training (``manage.py train_model``, the retraining tasks)."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Always False: a model's report is what training measured."""
        return False
