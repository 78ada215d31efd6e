"""Every payload the platform sends, typed, in one place: the five live pushes and a whale alert's fields.

Live pushes (Channels, docs/ARCHITECTURE.md "Live pushes") carry times as epoch milliseconds and decimals as the
column's text (``str(Decimal)``, scale kept), the formats the dashboard's scripts read. A whale alert for the REST
API and for webhooks is :func:`alert_fields`: decimals as :func:`plain_decimal` (no trailing zeros), the time as
ISO 8601 plus epoch ms ``t``; the API adds the row's threshold and creation time.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, TypedDict, cast

from analytics import indicator_units
from analytics.indicators import IndicatorRow
from analytics.models import Candle, SymbolStats, WhaleAlert
from analytics.timeutil import datetime_to_ms
from ingest.records import TradeRecord


def plain_decimal(value: Decimal | None) -> str | None:
    """A decimal as a plain string without the column's trailing zeros (``61837.63``, never ``6.183763E+4``)."""
    if value is None:
        return None
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------------------------------- trades
class TradeTick(TypedDict):
    """One trade of the live tape: id, price, quantity, buyer is maker, trade time (ms)."""

    id: int
    p: str
    q: str
    m: bool
    T: int


class TradesPush(TypedDict):
    """The ``trades`` push: one symbol's new trades."""

    kind: Literal["trades"]
    exchange: str
    symbol: str
    trades: list[TradeTick]


def trade_tick(record: TradeRecord) -> TradeTick:
    """The tape entry of a trade (decimals as their text, time in ms)."""
    return {
        "id": record.trade_id,
        "p": record.price,
        "q": record.quantity,
        "m": record.is_buyer_maker,
        "T": record.trade_time,
    }


def trades_push(exchange: str, symbol: str, trades: list[TradeTick]) -> TradesPush:
    """The ``trades`` push of one symbol's trades, in the order given."""
    return {"kind": "trades", "exchange": exchange, "symbol": symbol, "trades": trades}


# --------------------------------------------------------------------------------------------- candles
class CandleTick(TypedDict):
    """One candle of a ``candles`` push: interval, open time (ms), OHLC, volume, quote volume, trade count, VWAP."""

    i: str
    t: int
    o: str
    h: str
    l: str  # noqa: E741 - the push's field name
    c: str
    v: str
    qv: str
    n: int
    vwap: str


class IndicatorValues(TypedDict):
    """One candle's indicators (``sma``/``ema`` map the period to the value), in pushes and API items."""

    sma: dict[str, str]
    ema: dict[str, str]
    rsi: str | None
    macd: str | None
    macd_signal: str | None
    macd_hist: str | None
    bb_upper: str | None
    bb_middle: str | None
    bb_lower: str | None


class IndicatorTick(IndicatorValues):
    """One candle's indicators, keyed by its interval ``i`` and open time ``t`` (ms)."""

    i: str
    t: int


class CandlesPush(TypedDict):
    """The ``candles`` push: one symbol's changed candles and their indicators."""

    kind: Literal["candles"]
    exchange: str
    symbol: str
    candles: list[CandleTick]
    indicators: list[IndicatorTick]


def candle_tick(candle: Candle) -> CandleTick:
    """One entry of the ``candles`` list of a ``candles`` push."""
    return {
        "i": candle.interval,
        "t": datetime_to_ms(candle.open_time),
        "o": str(candle.open),
        "h": str(candle.high),
        "l": str(candle.low),
        "c": str(candle.close),
        "v": str(candle.volume),
        "qv": str(candle.quote_volume),
        "n": candle.trade_count,
        "vwap": str(candle.vwap),
    }


def indicator_tick(interval: str, row: IndicatorRow) -> IndicatorTick:
    """One entry of the ``indicators`` list of a ``candles`` push: every stored column of the registry
    (:func:`analytics.indicator_units.columns`), a ``per_period`` one as a dict period -> value."""
    tick: dict[str, object] = {"i": interval, "t": datetime_to_ms(row.open_time)}
    for column in indicator_units.columns():
        value = row.values[column]
        tick[column] = {k: str(v) for k, v in value.items()} if isinstance(value, dict) else _text(value)
    return cast(IndicatorTick, tick)


def candles_push(exchange: str, symbol: str, candles: list[CandleTick], indicators: list[IndicatorTick]) -> CandlesPush:
    """The ``candles`` push of one symbol."""
    return {"kind": "candles", "exchange": exchange, "symbol": symbol, "candles": candles, "indicators": indicators}


# --------------------------------------------------------------------------------------------- stats
class StatsPush(TypedDict):
    """The ``stats`` push: one symbol's rolling 24-hour row (decimals as text, last trade time in ms)."""

    kind: Literal["stats"]
    exchange: str
    symbol: str
    last_price: str
    change_pct: str
    high: str
    low: str
    volume: str
    quote_volume: str
    trade_count: int
    last_trade_at: int


def stats_push(stats: SymbolStats) -> StatsPush:
    """The ``stats`` push of one symbol's 24-hour row."""
    return {
        "kind": "stats",
        "exchange": stats.exchange,
        "symbol": stats.symbol,
        "last_price": str(stats.last_price),
        "change_pct": str(stats.change_pct),
        "high": str(stats.high),
        "low": str(stats.low),
        "volume": str(stats.volume),
        "quote_volume": str(stats.quote_volume),
        "trade_count": stats.trade_count,
        "last_trade_at": datetime_to_ms(stats.last_trade_at),
    }


# --------------------------------------------------------------------------------------------- whale alerts
class WhaleTick(TypedDict):
    """One alert of a ``whales`` push."""

    exchange: str
    symbol: str
    trade_id: int
    price: str
    quantity: str
    notional: str
    side: str
    traded_at: int


class WhalesPush(TypedDict):
    """The ``whales`` push: new alerts, each with its time in ms."""

    kind: Literal["whales"]
    alerts: list[WhaleTick]


class AlertFields(TypedDict):
    """A whale alert for the REST API and for webhooks."""

    id: int
    exchange: str
    symbol: str
    trade_id: int
    side: str
    price: str | None
    quantity: str | None
    notional: str | None
    traded_at: str
    t: int


def whale_tick(alert: WhaleAlert) -> WhaleTick:
    """The ``whales`` push entry of an alert (decimals as the column's text, time in ms)."""
    return {
        "exchange": alert.exchange,
        "symbol": alert.symbol,
        "trade_id": alert.trade_id,
        "price": str(alert.price),
        "quantity": str(alert.quantity),
        "notional": str(alert.notional),
        "side": alert.side,
        "traded_at": datetime_to_ms(alert.traded_at),
    }


def whales_push(alerts: list[WhaleAlert]) -> WhalesPush:
    """The ``whales`` push of the alerts, in the order given."""
    return {"kind": "whales", "alerts": [whale_tick(a) for a in alerts]}


def alert_fields(alert: WhaleAlert) -> AlertFields:
    """The alert as JSON-safe fields (decimals as plain strings, time as ISO 8601 and epoch ms)."""
    return {
        "id": alert.pk,
        "exchange": alert.exchange,
        "symbol": alert.symbol,
        "trade_id": alert.trade_id,
        "side": alert.side,
        "price": plain_decimal(alert.price),
        "quantity": plain_decimal(alert.quantity),
        "notional": plain_decimal(alert.notional),
        "traded_at": alert.traded_at.isoformat(),
        "t": datetime_to_ms(alert.traded_at),
    }


#: what :func:`analytics.live.publish_many` may carry
Push = TradesPush | CandlesPush | StatsPush | WhalesPush
