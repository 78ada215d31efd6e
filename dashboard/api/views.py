"""REST API v1 views: thin; parameters are parsed in :mod:`dashboard.api.params`, reads are index range scans."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiTokenAuthentication
from analytics import payloads
from analytics.models import Candle, IndicatorPoint, SymbolStats, Trade, WhaleAlert
from analytics.queries import known_pairs
from dashboard import health
from dashboard.api import params
from dashboard.api import serializers as s
from dashboard.api.errors import api_exception_handler
from dashboard.api.pagination import Cursor, keyset_page
from dashboard.auth import LoginRequiredIfConfigured

M = TypeVar("M")
CANDLE_DEFAULT_LIMIT = 500
CANDLE_MAX_LIMIT = 5000

_ERRORS = {
    400: OpenApiResponse(s.ErrorSerializer, description="a bad parameter, named in error.param"),
    401: OpenApiResponse(s.ErrorSerializer, description="login required (DASHBOARD_LOGIN_REQUIRED)"),
    429: OpenApiResponse(s.ErrorSerializer, description="rate limit exceeded"),
}


def _p(name: str, description: str, required: bool = False, type_: Any = str) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, required=required, description=description)


EXCHANGE = _p("exchange", params.EXCHANGE_CHOICES)
SYMBOL = _p("symbol", "the exchange's symbol, e.g. BTCUSDT or BTC-USD")
INTERVAL = _p("interval", "1m, 5m, 15m, 1h, 4h or 1d (default 1m)")
START = _p("start", "ISO 8601 (2024-08-09T00:00:00Z) or epoch milliseconds, inclusive")
END = _p("end", "ISO 8601 or epoch milliseconds, inclusive")
CURSOR = _p("cursor", "the 'cursor' value of the previous page")


class ApiView(APIView):
    """Token first, so an anonymous request is told ``401`` with ``WWW-Authenticate: Token``; then the users' own
    hashed tokens (``Authorization: Bearer``, :mod:`accounts.authentication`) and the session."""

    authentication_classes = [TokenAuthentication, ApiTokenAuthentication, SessionAuthentication]
    permission_classes = [LoginRequiredIfConfigured]

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response | None]:
        """:func:`api_exception_handler`, so every error is the API's JSON error envelope."""
        return api_exception_handler


def _keyset_response(
    request: Request, rows: list[M], cursor: Cursor | None, item: Callable[[M], Mapping[str, object]]
) -> Response:
    next_url = None
    if cursor is not None:
        query = request.query_params.copy()
        query["cursor"] = cursor.encode()
        next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
    return Response(
        {"results": [item(r) for r in rows], "next": next_url, "cursor": cursor.encode() if cursor else None}
    )


class TradesView(ApiView):
    """Trades of one symbol, newest first, keyset-paginated on (traded_at, trade_id)."""

    @extend_schema(
        parameters=[
            _p("exchange", params.EXCHANGE_CHOICES, required=True),
            _p("symbol", "the exchange's symbol", required=True),
            _p("limit", f"1..{params.MAX_LIMIT} (default {params.DEFAULT_LIMIT})", type_=int),
            CURSOR,
        ],
        responses={200: s.page_serializer(s.TradeSerializer, "TradePage", cursor=True), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """Trades, newest first."""
        query = request.query_params
        exchange = params.exchange(query, required=True)
        symbol = params.symbol(query, required=True)
        limit = params.limit(query)
        cursor_raw = query.get("cursor")
        cursor = Cursor.decode(cursor_raw) if cursor_raw else None
        queryset = Trade.objects.filter(exchange=exchange, symbol=symbol)
        rows, next_cursor = keyset_page(queryset, "traded_at", "trade_id", cursor, limit)
        return _keyset_response(request, rows, next_cursor, payloads.trade_item)


def _series_queryset(request: Request, model: type[Candle] | type[IndicatorPoint]) -> list[Any]:
    query = request.query_params
    exchange = params.exchange(query, required=True)
    symbol = params.symbol(query, required=True)
    interval = params.interval(query)
    start, end = params.time_range(query)
    limit = params.limit(query, default=CANDLE_DEFAULT_LIMIT, maximum=CANDLE_MAX_LIMIT)
    queryset: QuerySet[Any] = model.objects.filter(exchange=exchange, symbol=symbol, interval=interval)
    if start is not None:
        queryset = queryset.filter(open_time__gte=start)
    if end is not None:
        queryset = queryset.filter(open_time__lte=end)
    if start is not None:
        return list(queryset.order_by("open_time")[:limit])
    # Without a start: the latest `limit` candles up to `end`, still returned oldest first.
    return list(reversed(queryset.order_by("-open_time")[:limit]))


SERIES_PARAMETERS = [
    _p("exchange", params.EXCHANGE_CHOICES, required=True),
    _p("symbol", "the exchange's symbol", required=True),
    INTERVAL,
    START,
    END,
    _p("limit", f"1..{CANDLE_MAX_LIMIT} (default {CANDLE_DEFAULT_LIMIT}); without start, the latest ones", type_=int),
]


class CandlesView(ApiView):
    """OHLCV candles, oldest first."""

    @extend_schema(
        parameters=SERIES_PARAMETERS,
        responses={200: s.page_serializer(s.CandleSerializer, "CandleList", cursor=False), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """Candles of one symbol and interval."""
        return Response({"results": [payloads.candle_item(c) for c in _series_queryset(request, Candle)]})


class IndicatorsView(ApiView):
    """Indicators per candle, oldest first."""

    @extend_schema(
        parameters=SERIES_PARAMETERS,
        responses={200: s.page_serializer(s.IndicatorSerializer, "IndicatorList", cursor=False), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """Indicators of one symbol and interval."""
        return Response(
            {"results": [payloads.indicator_point_item(p) for p in _series_queryset(request, IndicatorPoint)]}
        )


class WhalesView(ApiView):
    """Whale alerts, newest first, keyset-paginated on (traded_at, id)."""

    @extend_schema(
        parameters=[
            EXCHANGE,
            SYMBOL,
            _p("min_notional", "only alerts with at least this notional (quote currency)", type_=OpenApiTypes.DECIMAL),
            _p("limit", f"1..{params.MAX_LIMIT} (default {params.DEFAULT_LIMIT})", type_=int),
            CURSOR,
        ],
        responses={200: s.page_serializer(s.WhaleSerializer, "WhalePage", cursor=True), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """Whale alerts."""
        query = request.query_params
        exchange = params.exchange(query)
        symbol = params.symbol(query)
        min_notional = params.decimal(query, "min_notional")
        limit = params.limit(query)
        cursor_raw = query.get("cursor")
        cursor = Cursor.decode(cursor_raw) if cursor_raw else None
        queryset = WhaleAlert.objects.all()
        if exchange:
            queryset = queryset.filter(exchange=exchange)
        if symbol:
            queryset = queryset.filter(symbol=symbol)
        if min_notional is not None:
            queryset = queryset.filter(notional__gte=min_notional)
        rows, next_cursor = keyset_page(queryset, "traded_at", "id", cursor, limit)
        return _keyset_response(request, rows, next_cursor, payloads.whale_item)


class StatsView(ApiView):
    """Rolling 24-hour statistics per symbol."""

    @extend_schema(
        parameters=[EXCHANGE, SYMBOL],
        responses={200: s.page_serializer(s.StatsSerializer, "StatsList", cursor=False), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """24h statistics, optionally of one exchange and/or symbol."""
        exchange = params.exchange(request.query_params)
        symbol = params.symbol(request.query_params)
        queryset = SymbolStats.objects.order_by("exchange", "symbol")
        if exchange:
            queryset = queryset.filter(exchange=exchange)
        if symbol:
            queryset = queryset.filter(symbol=symbol)
        return Response({"results": [payloads.stats_item(row) for row in queryset]})


class SymbolsView(ApiView):
    """Known (exchange, symbol) pairs."""

    @extend_schema(responses={200: s.page_serializer(s.SymbolSerializer, "SymbolList", cursor=False), **_ERRORS})
    def get(self, request: Request) -> Response:
        """Pairs with stored trades or statistics."""
        return Response({"results": [{"exchange": e, "symbol": sym} for e, sym in known_pairs()]})


class HealthView(ApiView):
    """Pipeline health for operators."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **_ERRORS})
    def get(self, request: Request) -> Response:
        """Ingest rate, consumer lag per partition, DLQ count, last trade age per symbol, queue depths.

        Staff see the error texts (credentials redacted); everyone else sees the figures only.
        """
        body = health.pipeline_health()
        return Response(body if request.user.is_staff else health.public_view(body))
