"""Admin for stored market data, built for tables of tens of millions of rows.

- No exact ``COUNT(*)`` per page: ``show_full_result_count = False`` and
  :class:`~analytics.paginators.EstimatedCountPaginator` (planner estimate unfiltered, bounded count filtered).
- Exchange/symbol filter choices come from a loose index scan, not ``SELECT DISTINCT`` over the table.
- Trade search is an exact trade id, looked for in the natural-key index once per known pair. That index is ordered
  by time before the id (it serves every read by time), so each probe reads the pair's entries in every partition
  the other filters leave: on a large table, pick a day in the date hierarchy first (one partition).
- Trades are ordered by primary key (insertion order, an index) unless one symbol is selected, when the
  ``(exchange, symbol, traded_at, trade_id)`` index serves newest-first; column sorting is off, since it would sort
  the table.
- Market data is read-only: it comes from the pipeline, and a hand edit would be silently undone by a recompute.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from analytics.models import Candle, IndicatorPoint, SymbolStats, SymbolThreshold, Trade, WhaleAlert
from analytics.paginators import EstimatedCountPaginator
from analytics.queries import known_pairs

# A trade id as people type it: ASCII digits that fit PostgreSQL's bigint. str.isdigit() also accepts "²" (which
# int() then refuses) and a 30-digit number overflows the column: both were a 500 instead of "no results".
_TRADE_ID = re.compile(r"[0-9]{1,19}", re.ASCII)
_BIGINT_MAX = 2**63 - 1


def parse_trade_id(term: str) -> int | None:
    """The trade id in a search box, or None when the text cannot be one."""
    term = term.strip()
    if not _TRADE_ID.fullmatch(term):
        return None
    value = int(term)
    return value if value <= _BIGINT_MAX else None


class _PairFilter(admin.SimpleListFilter):
    """Choices from the known (exchange, symbol) pairs; the query is a plain equality on the indexed column."""

    field = ""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        index = 0 if self.field == "exchange" else 1
        values = sorted({pair[index] for pair in known_pairs()})
        return [(v, v) for v in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class ExchangeFilter(_PairFilter):
    """By exchange."""

    title = "exchange"
    parameter_name = "exchange"
    field = "exchange"


class SymbolFilter(_PairFilter):
    """By symbol."""

    title = "symbol"
    parameter_name = "symbol"
    field = "symbol"


class SideFilter(admin.SimpleListFilter):
    """The taker's side (``is_buyer_maker`` true means the taker sold)."""

    title = "side"
    parameter_name = "side"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        """The two choices, labelled with what the taker did."""
        return [("buy", "buy (taker bought)"), ("sell", "sell (taker sold)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The trades whose taker bought or sold; any other value filters nothing."""
        value = self.value()
        if value in {"buy", "sell"}:
            return queryset.filter(is_buyer_maker=value == "sell")
        return queryset


class BigTableAdmin(admin.ModelAdmin):
    """Shared settings for the large, pipeline-written tables: estimated counts, read-only."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    sortable_by = ()
    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Always False: these rows come from the pipeline only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Always False: these rows come from the pipeline only, so the admin shows them read-only."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Always False: retention and the pipeline own deletion."""
        return False


@admin.register(Trade)
class TradeAdmin(BigTableAdmin):
    """Trades: newest first, filter by exchange/symbol/side, search an exact trade id."""

    list_display = (
        "traded_at",
        "exchange",
        "symbol",
        "trade_id",
        "side",
        "price",
        "quantity",
        "quote_quantity",
    )
    list_filter = (ExchangeFilter, SymbolFilter, SideFilter)
    search_fields = ("trade_id",)
    search_help_text = "An exact trade id (the exchange's number); on a large table, pick a day first."
    date_hierarchy = "traded_at"
    # The date hierarchy is rendered by templates/admin/analytics/trade/change_list.html without table scans.

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        """An order an index already provides (newest first for one pair or one day, else the primary key)."""
        # One symbol: its B-tree index is already in time order. One day: the BRIN index bounds the rows to that
        # day, then a top-N sort (cost grows with the day's trades, not with the table). Otherwise the primary key
        # (insertion order), never a sort of the table.
        if request.GET.get("exchange") and request.GET.get("symbol"):
            return ("-traded_at",)
        if request.GET.get("traded_at__day"):
            return ("-traded_at",)
        return ("-id",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Trade], search_term: str
    ) -> tuple[QuerySet[Trade], bool]:
        """Exact trade-id search through the natural-key index; a term that is not an id matches nothing."""
        if not search_term.strip():
            return queryset, False
        trade_id = parse_trade_id(search_term)
        if trade_id is None:
            return queryset.none(), False
        pairs = known_pairs()
        if not pairs:
            return queryset.none(), False
        # One natural-key index scan per pair (a BitmapOr) checking trade_id in the index, not the table: the key is
        # (exchange, symbol, traded_at, trade_id), so a day picked in the date hierarchy bounds it to one partition.
        condition = Q()
        for exchange, symbol in pairs:
            condition |= Q(exchange=exchange, symbol=symbol, trade_id=trade_id)
        return queryset.filter(condition), False

    @admin.display(description="side")
    def side(self, obj: Trade) -> str:
        """``buy`` or ``sell``, the taker's side."""
        return obj.side


@admin.register(Candle)
class CandleAdmin(BigTableAdmin):
    """Candles, recomputed from trades by the pipeline or imported from the exchange's archive (``source``)."""

    list_display = (
        "open_time",
        "exchange",
        "symbol",
        "interval",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "trade_count",
        "source",
    )
    list_filter = (ExchangeFilter, SymbolFilter, "interval", "source")
    ordering = ("-id",)


@admin.register(IndicatorPoint)
class IndicatorPointAdmin(BigTableAdmin):
    """Indicators per candle."""

    list_display = ("open_time", "exchange", "symbol", "interval", "rsi", "macd", "bb_middle")
    list_filter = (ExchangeFilter, SymbolFilter, "interval")
    ordering = ("-id",)


@admin.register(WhaleAlert)
class WhaleAlertAdmin(BigTableAdmin):
    """Whale alerts (the ``whale_time`` index serves newest first)."""

    list_display = ("traded_at", "exchange", "symbol", "trade_id", "side", "price", "quantity", "notional")
    list_filter = (ExchangeFilter, SymbolFilter, "side")
    search_fields = ("trade_id",)
    search_help_text = "An exact trade id."
    date_hierarchy = "traded_at"
    ordering = ("-traded_at",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[WhaleAlert], search_term: str
    ) -> tuple[QuerySet[WhaleAlert], bool]:
        """Exact trade-id search; a term that is not an id matches nothing."""
        if not search_term.strip():
            return queryset, False
        trade_id = parse_trade_id(search_term)
        if trade_id is None:
            return queryset.none(), False
        return queryset.filter(trade_id=trade_id), False


@admin.register(SymbolStats)
class SymbolStatsAdmin(BigTableAdmin):
    """Rolling 24h statistics (one row per symbol)."""

    list_display = (
        "exchange",
        "symbol",
        "last_price",
        "change_pct",
        "high",
        "low",
        "volume",
        "trade_count",
        "last_trade_at",
    )
    list_filter = ("exchange",)
    ordering = ("exchange", "symbol")


@admin.register(SymbolThreshold)
class SymbolThresholdAdmin(admin.ModelAdmin):
    """Per-symbol whale thresholds (override ``WHALE_THRESHOLD_USD``): editable."""

    list_display = ("exchange", "symbol", "threshold_usd")
    list_editable = ("threshold_usd",)
    list_filter = ("exchange",)
    search_fields = ("symbol",)
    ordering = ("exchange", "symbol")
