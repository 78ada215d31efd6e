"""Template filters for numbers stored at a fixed scale (prices are ``numeric(30, 12)``)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import template

register = template.Library()


@register.filter
def plain(value: Any) -> str:
    """A decimal without the column's padding, as the trade had it (``61836.010000000000`` -> ``61836.01``); an
    em dash for None."""
    if value is None or value == "":
        return "—"
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return str(value)
    # normalize() alone gives 6.2E+4 for 62000; format "f" keeps it positional.
    return format(number.normalize(), "f")
