"""Ownership of backtest runs and prediction models: a null owner is shared (commands, the demo); users see their
own rows and the shared ones, staff see all. Used by the pages and the API, so both hide the same rows."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet

M = TypeVar("M", bound=Model)


def owner_of(user: Any) -> Any:
    """The owner to store for a row ``user`` creates: the user when signed in, else ``None`` (shared)."""
    return user if user is not None and user.is_authenticated else None


def visible_to(queryset: QuerySet[M], user: Any, field: str = "owner") -> QuerySet[M]:
    """The rows of ``queryset`` that ``user`` may see: all for staff, own and shared for users, shared for others."""
    if user is not None and user.is_authenticated and user.is_staff:
        return queryset
    shared = Q(**{f"{field}__isnull": True})
    if user is not None and user.is_authenticated:
        return queryset.filter(shared | Q(**{field: user.pk}))
    return queryset.filter(shared)
