"""``{% trade_date_hierarchy cl %}``: the scan-free date hierarchy of :mod:`dashboard.admin_dates`."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.templatetags.base import InclusionAdminNode

from dashboard.admin_dates import trade_date_hierarchy

register = template.Library()


@register.tag(name="trade_date_hierarchy")
def trade_date_hierarchy_tag(parser: Any, token: Any) -> InclusionAdminNode:
    """Render ``admin/date_hierarchy.html`` with index-probed choices."""
    return InclusionAdminNode(
        parser, token, func=trade_date_hierarchy, template_name="date_hierarchy.html", takes_context=False
    )
