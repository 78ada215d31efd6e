"""A date hierarchy for the trade changelist that never scans the trade table.

Django's own ``date_hierarchy`` tag runs ``MIN``/``MAX`` and ``SELECT DISTINCT date_trunc(...)`` over the filtered
queryset: full scans on tens of millions of rows. Here the bounds come from one index probe per (exchange, symbol)
pair (:func:`analytics.queries.trade_time_bounds`) and the choices are every year, month or day between them. A
choice may lead to an empty page when trading paused for a whole day, which is the price of not scanning.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from django.utils import formats, timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from analytics.queries import trade_time_bounds


def _bounds(exchange: str | None, symbol: str | None) -> tuple[dt.datetime, dt.datetime] | None:
    spans = [
        span
        for (e, s), span in trade_time_bounds().items()
        if (not exchange or e == exchange) and (not symbol or s == symbol)
    ]
    if not spans:
        return None
    first = min(span[0] for span in spans)
    last = max(span[1] for span in spans)
    return timezone.localtime(first), timezone.localtime(last)


def _months(first: dt.datetime, last: dt.datetime, year: int) -> list[dt.date]:
    lo = first.month if first.year == year else 1
    hi = last.month if last.year == year else 12
    return [dt.date(year, m, 1) for m in range(lo, hi + 1)] if first.year <= year <= last.year else []


def _days(first: dt.datetime, last: dt.datetime, year: int, month: int) -> list[dt.date]:
    start = max(dt.date(year, month, 1), first.date())
    end = min(dt.date(year, month, calendar.monthrange(year, month)[1]), last.date())
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)] if start <= end else []


def trade_date_hierarchy(cl: Any) -> dict[str, Any]:
    """The context ``admin/date_hierarchy.html`` expects, built from index probes only."""
    field = cl.date_hierarchy
    year_field, month_field, day_field = f"{field}__year", f"{field}__month", f"{field}__day"
    generic = f"{field}__"
    year = cl.params.get(year_field)
    month = cl.params.get(month_field)
    day = cl.params.get(day_field)

    def link(filters: dict[str, Any]) -> str:
        return str(cl.get_query_string(filters, [generic]))

    bounds = _bounds(cl.params.get("exchange"), cl.params.get("symbol"))
    if bounds is None and not year:
        return {"show": False}
    if not (year or month or day) and bounds is not None and bounds[0].year == bounds[1].year:
        year = str(bounds[0].year)
        if bounds[0].month == bounds[1].month:
            month = str(bounds[0].month)
    if year and month and day:
        date = dt.date(int(year), int(month), int(day))
        return {
            "show": True,
            "back": {
                "link": link({year_field: year, month_field: month}),
                "title": capfirst(formats.date_format(date, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(formats.date_format(date, "MONTH_DAY_FORMAT"))}],
        }
    if year and month:
        days = _days(*bounds, int(year), int(month)) if bounds else []
        return {
            "show": True,
            "back": {"link": link({year_field: year}), "title": str(year)},
            "choices": [
                {
                    "link": link({year_field: year, month_field: month, day_field: d.day}),
                    "title": capfirst(formats.date_format(d, "MONTH_DAY_FORMAT")),
                }
                for d in days
            ],
        }
    if year:
        months = _months(*bounds, int(year)) if bounds else []
        return {
            "show": True,
            "back": {"link": link({}), "title": _("All dates")},
            "choices": [
                {
                    "link": link({year_field: year, month_field: m.month}),
                    "title": capfirst(formats.date_format(m, "YEAR_MONTH_FORMAT")),
                }
                for m in months
            ],
        }
    assert bounds is not None  # no year and no bounds returned above
    return {
        "show": True,
        "back": None,
        "choices": [
            {"link": link({year_field: str(y)}), "title": str(y)} for y in range(bounds[0].year, bounds[1].year + 1)
        ],
    }
