"""Every payload the platform sends, typed, in one place: the REST API's items, the live pushes built from the same
items, and a whale alert's fields for webhooks.

One wire shape per concept: a candle, an indicator point, a trade, a whale alert or a symbol's 24-hour statistics
is the same JSON object whether the REST API answers it or a live push (Channels, docs/ARCHITECTURE.md "Live
pushes") carries it, built by one function here. Times are ISO 8601 plus ``t`` in epoch milliseconds, decimals are
:func:`plain_decimal` strings (no trailing zeros, never floats). The pushes wrap lists of those items in a small
envelope (``kind``, ``exchange``, ``symbol``). ``dashboard/api/serializers.py`` documents the same items for the
OpenAPI schema; ``tests/dashboard/test_api_schema.py`` proves the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Literal, NotRequired, TypedDict, cast, overload

from analytics import indicator_units
from analytics.indicators import IndicatorRow
from analytics.models import Candle, IndicatorPoint, SymbolStats, Trade, WhaleAlert
from analytics.timeutil import datetime_to_ms, ms_to_datetime
from ingest.records import TradeRecord


@overload
def plain_decimal(value: Decimal) -> str: ...
@overload
def plain_decimal(value: None) -> None: ...
@overload
def plain_decimal(value: Decimal | None) -> str | None: ...
def plain_decimal(value: Decimal | None) -> str | None:
    """A decimal as a plain string without the column's trailing zeros (``61837.63``, never ``6.183763E+4``)."""
    if value is None:
        return None
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


# --------------------------------------------------------------------------------------------- trades
class TradeItem(TypedDict):
    """A trade: decimals as plain strings, ``traded_at`` ISO 8601 and ``t`` epoch ms, ``side`` the taker's."""

    exchange: str
    symbol: str
    trade_id: int
    price: str
    quantity: str
    quote_quantity: str
    side: str
    is_buyer_maker: bool
    traded_at: str
    t: int
    #: the exchange's own trade id, only where it is a string that is not an integer (``trade_id`` is its key)
    trade_ref: NotRequired[str]


class TradesPush(TypedDict):
    """The ``trades`` push: one symbol's new trades, oldest first."""

    kind: Literal["trades"]
    exchange: str
    symbol: str
    trades: list[TradeItem]


def _trade_item(
    exchange: str,
    symbol: str,
    trade_id: int,
    price: Decimal,
    quantity: Decimal,
    quote_quantity: Decimal,
    is_buyer_maker: bool,
    traded_at: datetime,
    trade_ref: str | None,
) -> TradeItem:
    item: TradeItem = {
        "exchange": exchange,
        "symbol": symbol,
        "trade_id": trade_id,
        "price": plain_decimal(price),
        "quantity": plain_decimal(quantity),
        "quote_quantity": plain_decimal(quote_quantity),
        "side": "sell" if is_buyer_maker else "buy",
        "is_buyer_maker": is_buyer_maker,
        "traded_at": traded_at.isoformat(),
        "t": datetime_to_ms(traded_at),
    }
    if trade_ref is not None:
        item["trade_ref"] = trade_ref
    return item


def trade_item(trade: Trade) -> TradeItem:
    """A stored trade."""
    return _trade_item(
        trade.exchange,
        trade.symbol,
        trade.trade_id,
        trade.price,
        trade.quantity,
        trade.quote_quantity,
        trade.is_buyer_maker,
        trade.traded_at,
        trade.trade_ref,
    )


# The columns a trade is stored in: price and quantity numeric(30, 12), quote_quantity (their product) numeric(38, 18).
_PRICE_STEP = Decimal(1).scaleb(-12)
_AMOUNT_STEP = Decimal(1).scaleb(-18)


def _as_stored(value: Decimal, step: Decimal) -> Decimal:
    # PostgreSQL rounds numeric half away from zero (ROUND_HALF_UP); the product of two numeric(30, 12) values needs
    # more than the default 28 digits to stay exact.
    with localcontext() as ctx:
        ctx.prec = 80
        return value.quantize(step, rounding=ROUND_HALF_UP)


def trade_item_from_record(record: TradeRecord) -> TradeItem:
    """A trade record as :func:`trade_item` will show it once stored (its decimals rounded as the columns round)."""
    price = _as_stored(Decimal(record.price), _PRICE_STEP)
    quantity = _as_stored(Decimal(record.quantity), _PRICE_STEP)
    with localcontext() as ctx:
        ctx.prec = 80
        quote = _as_stored(price * quantity, _AMOUNT_STEP)
    return _trade_item(
        record.exchange,
        record.symbol,
        record.trade_id,
        price,
        quantity,
        quote,
        record.is_buyer_maker,
        ms_to_datetime(record.trade_time),
        record.trade_ref,
    )


def trades_push(exchange: str, symbol: str, trades: list[TradeItem]) -> TradesPush:
    """The ``trades`` push of one symbol's trades, in the order given."""
    return {"kind": "trades", "exchange": exchange, "symbol": symbol, "trades": trades}


# --------------------------------------------------------------------------------------------- candles
class CandleItem(TypedDict):
    """A candle: ``t`` is the open time in epoch ms, decimals as plain strings."""

    t: int
    open_time: str
    interval: str
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trade_count: int
    vwap: str


class IndicatorItem(TypedDict):
    """One candle's indicators (``sma``/``ema`` map the period to the value), with its open time and interval."""

    t: int
    open_time: str
    interval: str
    sma: dict[str, str]
    ema: dict[str, str]
    rsi: str | None
    macd: str | None
    macd_signal: str | None
    macd_hist: str | None
    bb_upper: str | None
    bb_middle: str | None
    bb_lower: str | None


class CandlesPush(TypedDict):
    """The ``candles`` push: one symbol's changed candles (all intervals) and their indicators."""

    kind: Literal["candles"]
    exchange: str
    symbol: str
    candles: list[CandleItem]
    indicators: list[IndicatorItem]


def candle_item(candle: Candle) -> CandleItem:
    """A candle."""
    return {
        "t": datetime_to_ms(candle.open_time),
        "open_time": candle.open_time.isoformat(),
        "interval": candle.interval,
        "open": plain_decimal(candle.open),
        "high": plain_decimal(candle.high),
        "low": plain_decimal(candle.low),
        "close": plain_decimal(candle.close),
        "volume": plain_decimal(candle.volume),
        "quote_volume": plain_decimal(candle.quote_volume),
        "trade_count": candle.trade_count,
        "vwap": plain_decimal(candle.vwap),
    }


def indicator_item(interval: str, row: IndicatorRow) -> IndicatorItem:
    """The indicators of one candle of ``interval`` (computed, or stored and read back with ``row_from_point``):
    every stored column of the registry (:func:`analytics.indicator_units.columns`), a per-period one as a dict
    period -> value."""
    item: dict[str, object] = {
        "t": datetime_to_ms(row.open_time),
        "open_time": row.open_time.isoformat(),
        "interval": interval,
    }
    for column in indicator_units.columns():
        value = row.values[column]
        item[column] = (
            {k: plain_decimal(v) for k, v in value.items()} if isinstance(value, dict) else plain_decimal(value)
        )
    return cast(IndicatorItem, item)


def _stored_series(values: object) -> dict[str, Decimal]:
    # Tolerant of what a JSON column may hold: anything but a mapping is no series, a null is no value.
    if not isinstance(values, dict):
        return {}
    return {str(k): Decimal(str(v)) for k, v in values.items() if v is not None}


def indicator_point_item(point: IndicatorPoint) -> IndicatorItem:
    """A stored indicator point (a ``per_period`` JSON column read tolerantly: a null value or a non-object is left
    out)."""
    per_period = indicator_units.empty_values()  # {} marks a per_period column
    values = {
        column: _stored_series(getattr(point, column)) if per_period[column] == {} else getattr(point, column)
        for column in indicator_units.columns()
    }
    return indicator_item(point.interval, IndicatorRow(point.open_time, values))


def candles_push(exchange: str, symbol: str, candles: list[CandleItem], indicators: list[IndicatorItem]) -> CandlesPush:
    """The ``candles`` push of one symbol."""
    return {"kind": "candles", "exchange": exchange, "symbol": symbol, "candles": candles, "indicators": indicators}


# --------------------------------------------------------------------------------------------- stats
class StatsItem(TypedDict):
    """A symbol's rolling 24-hour statistics; ``t`` is the last trade's time in epoch ms."""

    exchange: str
    symbol: str
    last_price: str
    open_price: str
    change_pct: str
    high: str
    low: str
    volume: str
    quote_volume: str
    trade_count: int
    last_trade_at: str
    t: int
    updated_at: str


class StatsPush(StatsItem):
    """The ``stats`` push: one symbol's :class:`StatsItem` with its ``kind``."""

    kind: Literal["stats"]


def stats_item(stats: SymbolStats) -> StatsItem:
    """The 24-hour statistics of one symbol."""
    return {
        "exchange": stats.exchange,
        "symbol": stats.symbol,
        "last_price": plain_decimal(stats.last_price),
        "open_price": plain_decimal(stats.open_price),
        "change_pct": plain_decimal(stats.change_pct),
        "high": plain_decimal(stats.high),
        "low": plain_decimal(stats.low),
        "volume": plain_decimal(stats.volume),
        "quote_volume": plain_decimal(stats.quote_volume),
        "trade_count": stats.trade_count,
        "last_trade_at": stats.last_trade_at.isoformat(),
        "t": datetime_to_ms(stats.last_trade_at),
        "updated_at": stats.updated_at.isoformat(),
    }


def stats_push(stats: SymbolStats) -> StatsPush:
    """The ``stats`` push of one symbol's 24-hour row."""
    return {"kind": "stats", **stats_item(stats)}


# --------------------------------------------------------------------------------------------- whale alerts
class AlertFields(TypedDict):
    """A whale alert for webhooks (and the core of :class:`WhaleItem`)."""

    id: int
    exchange: str
    symbol: str
    trade_id: int
    side: str
    price: str
    quantity: str
    notional: str
    traded_at: str
    t: int


class WhaleItem(AlertFields):
    """A whale alert: its webhook fields, the threshold it crossed and when it was stored."""

    threshold: str
    created_at: str


class WhalesPush(TypedDict):
    """The ``whales`` push: new alerts."""

    kind: Literal["whales"]
    alerts: list[WhaleItem]


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


def whale_item(alert: WhaleAlert) -> WhaleItem:
    """A whale alert: its webhook fields plus the threshold it crossed and when it was stored."""
    return {
        **alert_fields(alert),
        "threshold": plain_decimal(alert.threshold),
        "created_at": alert.created_at.isoformat(),
    }


def whales_push(alerts: list[WhaleAlert]) -> WhalesPush:
    """The ``whales`` push of the alerts, in the order given."""
    return {"kind": "whales", "alerts": [whale_item(a) for a in alerts]}


# --------------------------------------------------------------------------------------------- order books
class BookItem(TypedDict):
    """One market's L2 book: the best levels of each side as ``[price, qty]`` plain decimal strings, best first.

    ``t`` is the exchange event time (epoch ms) of the last update applied (None before any), ``valid`` whether
    the book is in sync (docs/BOOKS.md); a book that is not valid carries no level.
    """

    exchange: str
    symbol: str
    t: int | None
    valid: bool
    bids: list[list[str]]
    asks: list[list[str]]


class BookMetricsItem(TypedDict):
    """A book's metrics (``books.book.BookMetrics``) as plain decimal strings; depths in base quantity."""

    best_bid: str
    best_ask: str
    spread: str
    mid: str
    bid_depth_10bps: str
    ask_depth_10bps: str
    bid_depth_1pct: str
    ask_depth_1pct: str
    imbalance: str


class BookPush(BookItem):
    """The ``book`` push: one market's :class:`BookItem` and its metrics (None while a side is empty)."""

    kind: Literal["book"]
    metrics: BookMetricsItem | None


#: a level as a book returns it: (price, qty)
BookLevel = tuple[Decimal, Decimal]


def book_item(
    exchange: str,
    symbol: str,
    t: int | None,
    valid: bool,
    bids: Iterable[BookLevel],
    asks: Iterable[BookLevel],
) -> BookItem:
    """A book's levels (best first) as its item; a book that is not valid shows none, never stale ones."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "t": t,
        "valid": valid,
        "bids": [[plain_decimal(p), plain_decimal(q)] for p, q in bids] if valid else [],
        "asks": [[plain_decimal(p), plain_decimal(q)] for p, q in asks] if valid else [],
    }


def book_push(item: BookItem, metrics: Mapping[str, Decimal] | None) -> BookPush:
    """The ``book`` push of ``item`` with ``metrics`` (the fields of :class:`BookMetricsItem`; dropped when the
    book is not valid)."""
    shown = None
    if metrics is not None and item["valid"]:
        shown = cast(BookMetricsItem, {name: plain_decimal(metrics[name]) for name in BookMetricsItem.__annotations__})
    return {"kind": "book", **item, "metrics": shown}


#: what :func:`analytics.live.publish_many` may carry
Push = TradesPush | CandlesPush | StatsPush | WhalesPush | BookPush
