"""REST API v1: the stored order books (docs/BOOKS.md, "Storage"): a top-N snapshot at or before a time, and the 1 s
metrics series. Both are reads of one market by its natural key's index."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from analytics.payloads import plain_decimal
from analytics.timeutil import datetime_to_ms
from books.models import BookMetric, BookSnapshot
from books.storage import METRIC_FIELDS
from dashboard.api import params
from dashboard.api.serializers import page_serializer
from dashboard.api.views import _ERRORS, END, START, ApiView, _p

METRICS_DEFAULT_LIMIT = 600
METRICS_MAX_LIMIT = 86_400


class BookSerializer(serializers.Serializer):
    """A stored top-N snapshot."""

    exchange = serializers.CharField()
    symbol = serializers.CharField()
    t = serializers.IntegerField(help_text="exchange event time (epoch ms) of the last update applied")
    valid = serializers.BooleanField(help_text="false: the book broke (then no levels)")
    bids = serializers.ListField(child=serializers.ListField(child=serializers.CharField()), help_text="best first")
    asks = serializers.ListField(child=serializers.ListField(child=serializers.CharField()), help_text="best first")


class BookMetricSerializer(serializers.Serializer):
    """The book at the end of one second of event time (metrics null when not valid or a side is empty)."""

    t = serializers.IntegerField(help_text="the second's start, epoch ms")
    last_update_t = serializers.IntegerField(help_text="exchange event time (epoch ms) of the last update applied")
    valid = serializers.BooleanField()
    best_bid = serializers.CharField(allow_null=True)
    best_ask = serializers.CharField(allow_null=True)
    spread = serializers.CharField(allow_null=True)
    mid = serializers.CharField(allow_null=True)
    bid_depth_10bps = serializers.CharField(allow_null=True)
    ask_depth_10bps = serializers.CharField(allow_null=True)
    bid_depth_1pct = serializers.CharField(allow_null=True)
    ask_depth_1pct = serializers.CharField(allow_null=True)
    imbalance = serializers.CharField(allow_null=True)


def _market(request: Request) -> tuple[str, str]:
    exchange = params.exchange(request.query_params, required=True)
    symbol = params.symbol(request.query_params, required=True)
    assert exchange is not None  # required=True raised otherwise
    assert symbol is not None
    return exchange, symbol


class BookView(ApiView):
    """The stored snapshot of one market's book at or before ``at`` (the newest without)."""

    @extend_schema(
        parameters=[
            _p("exchange", params.EXCHANGE_CHOICES, required=True),
            _p("symbol", "the exchange's symbol", required=True),
            _p("at", "ISO 8601 or epoch milliseconds of exchange event time (default: the newest snapshot)"),
        ],
        responses={200: BookSerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """A top-N snapshot, best price first, decimals as the exchange's strings."""
        exchange, symbol = _market(request)
        raw = request.query_params.get("at")
        queryset = BookSnapshot.objects.filter(exchange=exchange, symbol=symbol)
        if raw is not None:
            at = params.parse_time("at", raw)
            # A window's row may end after `at` (its last update came later): then the window before holds the book.
            queryset = queryset.filter(window_start__lte=at, t__lte=datetime_to_ms(at))
        row = queryset.order_by("-window_start").first()
        if row is None:
            raise NotFound(f"no stored book of {exchange}:{symbol}" + (" at or before 'at'" if raw is not None else ""))
        return Response(
            {"exchange": row.exchange, "symbol": row.symbol, "t": row.t, "valid": row.valid, "bids": row.bids,
             "asks": row.asks}
        )  # fmt: skip


class BookMetricsView(ApiView):
    """The 1 s metrics series of one market, oldest first."""

    @extend_schema(
        parameters=[
            _p("exchange", params.EXCHANGE_CHOICES, required=True),
            _p("symbol", "the exchange's symbol", required=True),
            START,
            END,
            _p(
                "limit",
                f"1..{METRICS_MAX_LIMIT} (default {METRICS_DEFAULT_LIMIT}); without start, the latest ones",
                type_=int,
            ),
        ],
        responses={200: page_serializer(BookMetricSerializer, "BookMetricList", cursor=False), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """Seconds with at least one update; a second without any has no row (the book did not change)."""
        exchange, symbol = _market(request)
        start, end = params.time_range(request.query_params)
        limit = params.limit(request.query_params, default=METRICS_DEFAULT_LIMIT, maximum=METRICS_MAX_LIMIT)
        queryset = BookMetric.objects.filter(exchange=exchange, symbol=symbol)
        if start is not None:
            queryset = queryset.filter(second__gte=start)
        if end is not None:
            queryset = queryset.filter(second__lte=end)
        if start is not None:
            rows = list(queryset.order_by("second")[:limit])
        else:
            rows = list(reversed(queryset.order_by("-second")[:limit]))
        return Response({"results": [_metric_item(row) for row in rows]})


def _metric_item(row: BookMetric) -> dict[str, Any]:
    item: dict[str, Any] = {"t": datetime_to_ms(row.second), "last_update_t": row.t, "valid": row.valid}
    item.update({name: plain_decimal(getattr(row, name)) for name in METRIC_FIELDS})
    return item
