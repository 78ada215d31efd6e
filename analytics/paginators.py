"""Admin paginators for tables with tens of millions of rows: no exact ``COUNT(*)`` per page."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

# A filtered changelist counts at most this many rows (a bounded index/BRIN scan); beyond, it shows "cap+".
COUNT_CAP = 10_000


def estimated_table_rows(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's planner estimate (``pg_class.reltuples``) of the table's rows; None before the first ANALYZE."""
    table = queryset.model._meta.db_table
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


def bounded_count(queryset: QuerySet[Any], cap: int = COUNT_CAP) -> int:
    """``min(count, cap + 1)``: counts through ``LIMIT`` so a broad filter never scans the whole table."""
    return queryset.order_by()[: cap + 1].count()


class EstimatedCountPaginator(Paginator):
    """An exact count up to :data:`COUNT_CAP` (a bounded scan); past it, the planner's row estimate when unfiltered.

    Either way the number of pages is approximate past the cap, which is what an operator browsing the newest
    trades needs; exact counts on demand belong in SQL, not in a page load.
    """

    @cached_property
    def count(self) -> int:
        """Exact up to :data:`COUNT_CAP`; past it ``COUNT_CAP + 1`` if filtered, else at least the estimate."""
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        counted = bounded_count(queryset)
        if counted <= COUNT_CAP or queryset.query.where:
            return counted
        # Past the cap on the whole table: the planner's estimate (stale by at most one autovacuum cycle).
        estimate = estimated_table_rows(queryset)
        return max(counted, estimate or 0)
