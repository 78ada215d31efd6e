"""Template filters of the prediction pages."""

from __future__ import annotations

from django import template

from cryptoproject.timeutil import ms_to_datetime

register = template.Library()


@register.filter
def ms_date(value: int | None) -> str:
    """Epoch milliseconds as a UTC date-time (``2022-02-28 23:00``)."""
    if value is None:
        return "—"
    return ms_to_datetime(int(value)).strftime("%Y-%m-%d %H:%M")


@register.filter
def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage (``0.5432`` -> ``54.3%``); ``—`` when unknown."""
    if value is None:
        return "—"
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def signed_pct(value: float | None) -> str:
    """A fraction as a signed percentage to two decimals (``0.0123`` -> ``+1.23%``); an em dash for None."""
    if value is None:
        return "—"
    return f"{float(value) * 100:+.2f}%"


@register.filter
def iso_minute(value: str | None) -> str:
    """An ISO date-time string to the minute, UTC (``2022-02-28 00:00 UTC``)."""
    if not value:
        return "—"
    return f"{value[:16].replace('T', ' ')} UTC"
