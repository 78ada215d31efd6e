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
    trade_ref = serializers.CharField(
        required=False,
        help_text="the exchange's own trade id, only where it is a string that is not an integer (Bybit's UUID-like "
        "ids); trade_id is then its 63-bit key",
    )


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


class AlertRuleSerializer(serializers.Serializer):
    """An alert rule (``POST``: kind, exchange, symbol, params, channels, destinations, cooldown_s, active)."""

    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=["price_cross", "pct_move", "indicator", "volume_spike", "whale"])
    exchange = serializers.CharField(help_text="blank: every exchange (whale rules only)")
    symbol = serializers.CharField(help_text="blank: every symbol (whale rules only)")
    params = serializers.DictField(help_text="the kind's parameters (docs/ALERTS.md)")
    channels = serializers.ListField(child=serializers.CharField(), help_text="in_app, email, sms, telegram, webhook")
    destinations = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="only these of your destinations"
    )
    cooldown_s = serializers.IntegerField(required=False, help_text="seconds of trade time, default 0")
    active = serializers.BooleanField(required=False)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    last_fired_ms = serializers.IntegerField(read_only=True, allow_null=True)
    suppressed = serializers.IntegerField(read_only=True, help_text="firings the cooldown suppressed")


class AlertSerializer(serializers.Serializer):
    """One firing of a rule (newest first)."""

    id = serializers.IntegerField()
    rule = serializers.IntegerField()
    kind = serializers.CharField()
    exchange = serializers.CharField()
    symbol = serializers.CharField()
    trade_id = serializers.IntegerField(allow_null=True, help_text="null for candle kinds")
    price = serializers.CharField(allow_null=True, help_text="decimal string")
    traded_at = serializers.DateTimeField(help_text="the trade's time or the candle's close time")
    t = serializers.IntegerField(help_text="traded_at in epoch milliseconds")
    fired_at = serializers.DateTimeField()
    message = serializers.CharField()


class DestinationSerializer(serializers.Serializer):
    """Where a user receives messages (``secret``: a generic webhook's HMAC key, in the creation answer only)."""

    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=["in_app", "email", "sms", "telegram", "webhook"])
    target = serializers.CharField(help_text="e-mail, E.164 number, Telegram chat id or webhook URL")
    format = serializers.ChoiceField(choices=["slack", "discord", "generic"], required=False, allow_null=True)
    active = serializers.BooleanField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    has_secret = serializers.BooleanField(read_only=True)
    secret = serializers.CharField(read_only=True, required=False)


class MarkReadSerializer(serializers.Serializer):
    """Which notifications to mark read (without ``ids``: every unread one)."""

    ids = serializers.ListField(child=serializers.IntegerField(), required=False)


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
