"""Stored market data: trades, candles, indicators, whale alerts and rolling 24-hour statistics.

The natural key of a trade is (exchange, symbol, trade_id) everywhere: every write is idempotent on it.
Prices and quantities are exact decimals, never floats.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models.functions import Now


def price_field(**kwargs: Any) -> Any:
    """An exact decimal for prices and quantities (exchanges quote up to 8-10 decimals)."""
    return models.DecimalField(max_digits=30, decimal_places=12, **kwargs)


def amount_field(**kwargs: Any) -> Any:
    """An exact decimal for products and sums (notional, volume): wider than a price."""
    return models.DecimalField(max_digits=38, decimal_places=18, **kwargs)


class Interval(models.TextChoices):
    """Candle intervals; the value is the label used in URLs, the API and task arguments."""

    M1 = "1m", "1 minute"
    M5 = "5m", "5 minutes"
    M15 = "15m", "15 minutes"
    H1 = "1h", "1 hour"
    H4 = "4h", "4 hours"
    D1 = "1d", "1 day"


INTERVAL_SECONDS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}


class Trade(models.Model):
    """One executed trade, exactly once per (exchange, symbol, trade_id, traded_at).

    Sized for tens of millions of rows: the table is range-partitioned on ``traded_at`` (one partition per
    ``TRADE_PARTITION_DAYS``, :mod:`analytics.partitions`, made by migration 0004), so a day's inserts touch only
    that day's indexes and retention drops whole partitions. PostgreSQL enforces a unique key across partitions
    only if it holds the partition column, hence ``traded_at`` in the natural key (a replayed trade carries the
    same time) and a primary key of (id, traded_at) in the database; ``id`` stays unique (one sequence).

    The natural key's index is ordered (exchange, symbol, traded_at, trade_id) (migration 0005): uniqueness does not
    depend on the column order, and in this order the one B-tree also serves every read of a symbol's trades by time
    (candles, whales, stats, the API's keyset pages by (traded_at, trade_id)), so no second B-tree is kept up on
    every insert. No query looks a trade up by id without its time.
    """

    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32, help_text="The exchange's own symbol, upper case (BTCUSDT, BTC-USD).")
    trade_id = models.BigIntegerField(
        help_text="The exchange's trade id; for a string id that is not an integer (Bybit), its 63-bit key."
    )
    # NULL, not "": the column is absent for every exchange but Bybit, and a nullable column without a default is
    # added to the partitioned table without touching a row.
    trade_ref = models.CharField(  # noqa: DJ001
        max_length=64,
        null=True,
        blank=True,
        help_text="The exchange's own trade id when it is a string that is not an integer (trade_id is its key).",
    )
    price = price_field()
    quantity = price_field()
    quote_quantity = models.GeneratedField(
        expression=models.F("price") * models.F("quantity"),
        output_field=amount_field(),
        db_persist=True,
    )
    is_buyer_maker = models.BooleanField(help_text="True when the buyer was the maker, so the taker sold.")
    traded_at = models.DateTimeField(help_text="The exchange's trade time.")
    received_at = models.DateTimeField(help_text="When ingest received the trade.")
    stored_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol", "traded_at", "trade_id"], name="trade_natural_key"),
        ]
        indexes = [
            BrinIndex(fields=["traded_at"], name="trade_time_brin", autosummarize=True),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol}#{self.trade_id} {self.quantity}@{self.price}"

    @property
    def side(self) -> str:
        """The taker's side: ``sell`` when the buyer was the maker."""
        return "sell" if self.is_buyer_maker else "buy"


class CandleSource(models.TextChoices):
    """Where a candle comes from; a higher rank wins where two sources write the same bucket.

    ``live`` candles are recomputed from stored trades; ``imported`` ones are the exchange's own archived klines
    (``manage.py import_history``), the complete and final record of the bar, so they win over everything;
    ``rollup`` ones are larger intervals rolled up from imported klines, and win over live ones.
    See ``history/importer.py``.
    """

    LIVE = "live", "live (from stored trades)"
    ROLLUP = "rollup", "rolled up from imported klines"
    IMPORTED = "imported", "imported kline"


class Candle(models.Model):
    """OHLCV for one (exchange, symbol, interval, open_time), recomputed from stored trades (idempotent), or
    imported from the exchange's archive (``source``)."""

    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    interval = models.CharField(max_length=4, choices=Interval.choices)
    open_time = models.DateTimeField()
    open = price_field()
    high = price_field()
    low = price_field()
    close = price_field()
    volume = amount_field()
    quote_volume = amount_field()
    trade_count = models.PositiveIntegerField()
    vwap = price_field()
    source = models.CharField(max_length=8, choices=CandleSource.choices, db_default=CandleSource.LIVE)
    close_time = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Imported klines: the archive's close_time as published (shortened at outages).",
    )
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol", "interval", "open_time"], name="candle_natural_key"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol} {self.interval} {self.open_time:%Y-%m-%d %H:%M}"


class IndicatorPoint(models.Model):
    """Indicators for one candle of a series, stored so the dashboard reads them with the candles.

    ``sma`` and ``ema`` map the period (as a string, from ``INDICATOR_MA_PERIODS``) to the value; a value is
    absent until the series is long enough for it.
    """

    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    interval = models.CharField(max_length=4, choices=Interval.choices, default=Interval.M1)
    open_time = models.DateTimeField()
    sma = models.JSONField(default=dict)
    ema = models.JSONField(default=dict)
    rsi = price_field(null=True, blank=True)
    macd = price_field(null=True, blank=True)
    macd_signal = price_field(null=True, blank=True)
    macd_hist = price_field(null=True, blank=True)
    bb_upper = price_field(null=True, blank=True)
    bb_middle = price_field(null=True, blank=True)
    bb_lower = price_field(null=True, blank=True)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["exchange", "symbol", "interval", "open_time"], name="indicator_natural_key"
            ),
        ]

    def __str__(self) -> str:
        return f"indicators {self.exchange}:{self.symbol} {self.interval} {self.open_time:%Y-%m-%d %H:%M}"


class SymbolThreshold(models.Model):
    """A per-symbol override of ``WHALE_THRESHOLD_USD``, edited in the admin."""

    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    threshold_usd = models.DecimalField(max_digits=20, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol"], name="threshold_per_symbol"),
            models.CheckConstraint(condition=models.Q(threshold_usd__gt=0), name="threshold_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol} >= {self.threshold_usd}"


class WhaleAlert(models.Model):
    """One alert per trade whose quote notional is at or above the threshold in force for its symbol.

    Keyed by the trade's natural key (not a foreign key) so alerts outlive trade retention.
    """

    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    trade_id = models.BigIntegerField()
    price = price_field()
    quantity = price_field()
    notional = amount_field(help_text="price x quantity, in the quote currency.")
    side = models.CharField(max_length=4, help_text="The taker's side: buy or sell.")
    threshold = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("100000"))
    traded_at = models.DateTimeField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol", "trade_id"], name="whale_alert_per_trade"),
        ]
        indexes = [
            models.Index(fields=["traded_at"], name="whale_time"),
            # Filtered by symbol (the API, the whales page, alert matching): an index range per symbol instead of
            # walking the whole time index and filtering.
            models.Index(fields=["exchange", "symbol", "traded_at"], name="whale_symbol_time"),
        ]

    def __str__(self) -> str:
        return f"whale {self.side} {self.exchange}:{self.symbol} {self.notional:.0f}"


class SymbolStats(models.Model):
    """Rolling 24-hour statistics per symbol, refreshed after each batch and periodically."""

    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    last_price = price_field()
    open_price = price_field()
    change_pct = models.DecimalField(max_digits=12, decimal_places=4)
    high = price_field()
    low = price_field()
    volume = amount_field()
    quote_volume = amount_field()
    trade_count = models.PositiveBigIntegerField()
    last_trade_at = models.DateTimeField()
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol"], name="stats_per_symbol"),
        ]
        verbose_name_plural = "symbol stats"

    def __str__(self) -> str:
        return f"24h {self.exchange}:{self.symbol} {self.last_price}"
