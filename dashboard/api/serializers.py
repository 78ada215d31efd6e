"""The serializers that document the API's items in the OpenAPI schema.

The items themselves (TypedDicts and the functions that build them) are :mod:`analytics.payloads`, shared with the
live pushes; ``tests/dashboard/test_api_schema.py`` proves each serializer matches its TypedDict field by field.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


# --------------------------------------------------------------------------------------------- schema documentation
class TradeSerializer(serializers.Serializer):
    """A trade (newest first)."""

    exchange = serializers.CharField()
    symbol = serializers.CharField()
    trade_id = serializers.IntegerField()
    price = serializers.CharField(help_text="decimal string")
    quantity = serializers.CharField(help_text="decimal string")
    quote_quantity = serializers.CharField(help_text="price x quantity, decimal string")
    side = serializers.ChoiceField(choices=["buy", "sell"], help_text="the taker's side")
    is_buyer_maker = serializers.BooleanField()
    traded_at = serializers.DateTimeField()
    t = serializers.IntegerField(help_text="traded_at in epoch milliseconds")


class CandleSerializer(serializers.Serializer):
    """One OHLCV candle (oldest first)."""

    t = serializers.IntegerField(help_text="open time in epoch milliseconds")
    open_time = serializers.DateTimeField()
    interval = serializers.CharField()
    open = serializers.CharField()
    high = serializers.CharField()
    low = serializers.CharField()
    close = serializers.CharField()
    volume = serializers.CharField()
    quote_volume = serializers.CharField()
    trade_count = serializers.IntegerField()
    vwap = serializers.CharField()


class IndicatorSerializer(serializers.Serializer):
    """Indicators of one candle (oldest first); null until the series is long enough."""

    t = serializers.IntegerField()
    open_time = serializers.DateTimeField()
    interval = serializers.CharField()
    sma = serializers.DictField(child=serializers.CharField(), help_text="period -> value")
    ema = serializers.DictField(child=serializers.CharField(), help_text="period -> value")
    rsi = serializers.CharField(allow_null=True)
    macd = serializers.CharField(allow_null=True)
    macd_signal = serializers.CharField(allow_null=True)
    macd_hist = serializers.CharField(allow_null=True)
    bb_upper = serializers.CharField(allow_null=True)
    bb_middle = serializers.CharField(allow_null=True)
    bb_lower = serializers.CharField(allow_null=True)


class WhaleSerializer(serializers.Serializer):
    """A whale alert (newest first)."""

    id = serializers.IntegerField()
    exchange = serializers.CharField()
    symbol = serializers.CharField()
    trade_id = serializers.IntegerField()
    price = serializers.CharField()
    quantity = serializers.CharField()
    notional = serializers.CharField()
    side = serializers.ChoiceField(choices=["buy", "sell"])
    threshold = serializers.CharField()
    traded_at = serializers.DateTimeField()
    t = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class StatsSerializer(serializers.Serializer):
    """Rolling 24-hour statistics of one symbol."""

    exchange = serializers.CharField()
    symbol = serializers.CharField()
    last_price = serializers.CharField()
    open_price = serializers.CharField()
    change_pct = serializers.CharField()
    high = serializers.CharField()
    low = serializers.CharField()
    volume = serializers.CharField()
    quote_volume = serializers.CharField()
    trade_count = serializers.IntegerField()
    last_trade_at = serializers.DateTimeField()
    t = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class SymbolSerializer(serializers.Serializer):
    """A known (exchange, symbol) pair."""

    exchange = serializers.CharField()
    symbol = serializers.CharField()


class ErrorDetailSerializer(serializers.Serializer):
    """What went wrong, and with which parameter."""

    param = serializers.CharField(allow_null=True)
    message = serializers.CharField()
    code = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """The error envelope of every 4xx answer."""

    error = ErrorDetailSerializer()


def page_serializer(item: type[serializers.Serializer], name: str, cursor: bool) -> type[serializers.Serializer]:
    """A ``{"results": [...]}`` envelope (with ``next``/``cursor`` for keyset-paginated lists) for the schema."""
    fields: dict[str, Any] = {"results": item(many=True)}
    if cursor:
        fields["next"] = serializers.URLField(allow_null=True, help_text="URL of the next page, null on the last")
        fields["cursor"] = serializers.CharField(allow_null=True, help_text="the 'cursor' value of the next page")
    return type(name, (serializers.Serializer,), fields)
