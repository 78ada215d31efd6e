"""Rows to JSON items (decimals as plain strings, times as ISO 8601 plus epoch ms ``t``), and the serializers that
document those items in the OpenAPI schema."""

from __future__ import annotations

from typing import Any, TypedDict

from rest_framework import serializers

from analytics.models import Candle, IndicatorPoint, SymbolStats, Trade, WhaleAlert
from analytics.payloads import AlertFields, IndicatorValues, alert_fields
from analytics.payloads import plain_decimal as dec
from analytics.timeutil import datetime_to_ms as ms


class TradeItem(TypedDict):
    """A trade item: decimals as plain strings, ``traded_at`` ISO 8601 and ``t`` epoch ms."""

    exchange: str
    symbol: str
    trade_id: int
    price: str | None
    quantity: str | None
    quote_quantity: str | None
    side: str
    is_buyer_maker: bool
    traded_at: str
    t: int


class CandleItem(TypedDict):
    """A candle item: ``t`` is the open time in epoch ms, decimals as plain strings."""

    t: int
    open_time: str
    interval: str
    open: str | None
    high: str | None
    low: str | None
    close: str | None
    volume: str | None
    quote_volume: str | None
    trade_count: int
    vwap: str | None


class IndicatorItem(IndicatorValues):
    """One candle's indicators, with its open time (ISO 8601 and ``t`` epoch ms) and interval."""

    t: int
    open_time: str
    interval: str


class WhaleItem(AlertFields):
    """A whale alert item: its webhook fields, the threshold it crossed and when it was stored."""

    threshold: str | None
    created_at: str


class StatsItem(TypedDict):
    """A symbol's rolling 24h statistics; ``t`` is the last trade's time in epoch ms."""

    exchange: str
    symbol: str
    last_price: str | None
    open_price: str | None
    change_pct: str | None
    high: str | None
    low: str | None
    volume: str | None
    quote_volume: str | None
    trade_count: int
    last_trade_at: str
    t: int
    updated_at: str


def trade_item(trade: Trade) -> TradeItem:
    """One trade."""
    return {
        "exchange": trade.exchange,
        "symbol": trade.symbol,
        "trade_id": trade.trade_id,
        "price": dec(trade.price),
        "quantity": dec(trade.quantity),
        "quote_quantity": dec(trade.quote_quantity),
        "side": trade.side,
        "is_buyer_maker": trade.is_buyer_maker,
        "traded_at": trade.traded_at.isoformat(),
        "t": ms(trade.traded_at),
    }


def candle_item(candle: Candle) -> CandleItem:
    """One candle."""
    return {
        "t": ms(candle.open_time),
        "open_time": candle.open_time.isoformat(),
        "interval": candle.interval,
        "open": dec(candle.open),
        "high": dec(candle.high),
        "low": dec(candle.low),
        "close": dec(candle.close),
        "volume": dec(candle.volume),
        "quote_volume": dec(candle.quote_volume),
        "trade_count": candle.trade_count,
        "vwap": dec(candle.vwap),
    }


def _series(values: Any) -> dict[str, str]:
    if not isinstance(values, dict):
        return {}
    return {str(k): str(v) for k, v in values.items() if v is not None}


def indicator_item(point: IndicatorPoint) -> IndicatorItem:
    """Indicators of one candle; ``sma``/``ema`` map the period to the value."""
    return {
        "t": ms(point.open_time),
        "open_time": point.open_time.isoformat(),
        "interval": point.interval,
        "sma": _series(point.sma),
        "ema": _series(point.ema),
        "rsi": dec(point.rsi),
        "macd": dec(point.macd),
        "macd_signal": dec(point.macd_signal),
        "macd_hist": dec(point.macd_hist),
        "bb_upper": dec(point.bb_upper),
        "bb_middle": dec(point.bb_middle),
        "bb_lower": dec(point.bb_lower),
    }


def whale_item(alert: WhaleAlert) -> WhaleItem:
    """One whale alert: its webhook fields plus the threshold it crossed and when it was stored."""
    return {**alert_fields(alert), "threshold": dec(alert.threshold), "created_at": alert.created_at.isoformat()}


def stats_item(stats: SymbolStats) -> StatsItem:
    """The 24h statistics of one symbol."""
    return {
        "exchange": stats.exchange,
        "symbol": stats.symbol,
        "last_price": dec(stats.last_price),
        "open_price": dec(stats.open_price),
        "change_pct": dec(stats.change_pct),
        "high": dec(stats.high),
        "low": dec(stats.low),
        "volume": dec(stats.volume),
        "quote_volume": dec(stats.quote_volume),
        "trade_count": stats.trade_count,
        "last_trade_at": stats.last_trade_at.isoformat(),
        "t": ms(stats.last_trade_at),
        "updated_at": stats.updated_at.isoformat(),
    }


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
