"""The normalised trade record on ``market.trades`` (schema version 1) and dead-letter records.

Wire format: one UTF-8 JSON object per Kafka message, keyed by ``<exchange>:<symbol>`` so each symbol stays
ordered in one partition::

    {"v": 1, "exchange": "binance", "symbol": "BTCUSDT", "trade_id": 3735683259,
     "price": "61837.63000000", "quantity": "0.02000000", "is_buyer_maker": true,
     "trade_time": 1723161255342, "event_time": 1723161255343, "received_at": 1723161256612}

``price`` and ``quantity`` are the exchange's decimal strings, unchanged (never floats); times are epoch
milliseconds (``received_at`` is the ingest clock). ``is_buyer_maker`` true means the taker sold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import orjson

SCHEMA_VERSION = 1
EXCHANGES = frozenset({"binance", "coinbase", "kraken"})
# Trade times outside [2009-01-01, 2100-01-01) are not plausible epoch milliseconds.
_MIN_MS = 1_230_768_000_000
_MAX_MS = 4_102_444_800_000
_MAX_ID = 2**63


class InvalidRecordError(ValueError):
    """A record that must not reach ``market.trades``; ``reason`` says why (it goes to the DLQ)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TradeRecord(NamedTuple):
    """One trade, normalised across exchanges. Build it with :func:`make_trade` to validate.

    A named tuple rather than a frozen dataclass: it is built for every trade in ingest, the consumer and the
    simulator, and a tuple is built in a third of the time. Change a field with ``_replace``.
    """

    exchange: str
    symbol: str
    trade_id: int
    price: str
    quantity: str
    is_buyer_maker: bool
    trade_time: int
    event_time: int
    received_at: int

    @property
    def key(self) -> bytes:
        """The Kafka message key: ``<exchange>:<symbol>``."""
        return f"{self.exchange}:{self.symbol}".encode()

    @property
    def side(self) -> str:
        """The taker's side."""
        return "sell" if self.is_buyer_maker else "buy"

    def notional(self) -> Decimal:
        """price x quantity, exact."""
        return Decimal(self.price) * Decimal(self.quantity)

    def to_dict(self) -> dict[str, Any]:
        """The wire form as a dict (schema version included)."""
        return {
            "v": SCHEMA_VERSION,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "trade_id": self.trade_id,
            "price": self.price,
            "quantity": self.quantity,
            "is_buyer_maker": self.is_buyer_maker,
            "trade_time": self.trade_time,
            "event_time": self.event_time,
            "received_at": self.received_at,
        }

    def encode(self) -> bytes:
        """The Kafka message value."""
        return orjson.dumps(self.to_dict())


def _decimal_string(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, Decimal, int)):
        raise InvalidRecordError(f"{name} must be a decimal string, got {type(value).__name__}")
    text = str(value).strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InvalidRecordError(f"{name} is not a number: {text[:40]!r}") from None
    if not number.is_finite():
        raise InvalidRecordError(f"{name} is not finite: {text[:40]!r}")
    if number <= 0:
        raise InvalidRecordError(f"{name} must be positive, got {text[:40]!r}")
    return text


def _millis(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecordError(f"{name} must be integer milliseconds, got {type(value).__name__}")
    if not _MIN_MS <= value < _MAX_MS:
        raise InvalidRecordError(f"{name} is out of range: {value}")
    return value


#: A plain positive-or-zero decimal as exchanges send it ("61837.63000000"); zero is refused separately.
_PLAIN_DECIMAL = re.compile(r"[0-9]{1,40}(?:\.[0-9]{1,40})?").fullmatch
#: A symbol already in its normal form: upper case, no blanks (Binance, Coinbase and Kraken spellings).
_PLAIN_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9/_.:-]{0,31}").fullmatch


def make_trade(
    *,
    exchange: str,
    symbol: Any,
    trade_id: Any,
    price: Any,
    quantity: Any,
    is_buyer_maker: Any,
    trade_time: Any,
    event_time: Any,
    received_at: int,
) -> TradeRecord:
    """Validate and build a :class:`TradeRecord`, raising :class:`InvalidRecordError` with a reason."""
    # Fast path: what well-formed feeds send (exact types, plain decimals, a normal symbol). Anything else takes
    # the checks below, which accept the same values in more spellings and name what is wrong.
    if (
        type(trade_id) is int
        and type(price) is str
        and type(quantity) is str
        and type(is_buyer_maker) is bool
        and type(trade_time) is int
        and type(event_time) is int
        and type(received_at) is int
        and type(symbol) is str
        and exchange in EXCHANGES
        and 0 <= trade_id < _MAX_ID
        and _MIN_MS <= trade_time < _MAX_MS
        and _MIN_MS <= event_time < _MAX_MS
        and _MIN_MS <= received_at < _MAX_MS
        and _PLAIN_DECIMAL(price)
        and _PLAIN_DECIMAL(quantity)
        and price.strip("0.")
        and quantity.strip("0.")
        and _PLAIN_SYMBOL(symbol)
    ):
        return TradeRecord(
            exchange, symbol, trade_id, price, quantity, is_buyer_maker, trade_time, event_time, received_at
        )
    if exchange not in EXCHANGES:
        raise InvalidRecordError(f"unknown exchange {exchange!r}")
    if not isinstance(symbol, str) or not symbol.strip() or len(symbol) > 32:
        raise InvalidRecordError(f"symbol must be a non-empty string of at most 32 characters, got {symbol!r}")
    if isinstance(trade_id, str) and trade_id.isdigit():
        trade_id = int(trade_id)
    if isinstance(trade_id, bool) or not isinstance(trade_id, int) or not 0 <= trade_id < _MAX_ID:
        raise InvalidRecordError(f"trade_id must be a non-negative 64-bit integer, got {trade_id!r}")
    if not isinstance(is_buyer_maker, bool):
        raise InvalidRecordError(f"is_buyer_maker must be a boolean, got {is_buyer_maker!r}")
    return TradeRecord(
        exchange=exchange,
        symbol=symbol.strip().upper(),
        trade_id=trade_id,
        price=_decimal_string("price", price),
        quantity=_decimal_string("quantity", quantity),
        is_buyer_maker=is_buyer_maker,
        trade_time=_millis("trade_time", trade_time),
        event_time=_millis("event_time", event_time),
        received_at=_millis("received_at", received_at),
    )


def decode(value: bytes | str) -> TradeRecord:
    """Parse and validate one ``market.trades`` message value; :class:`InvalidRecordError` if it is bad."""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecordError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRecordError("record is not a JSON object")
    version = data.get("v")
    if version != SCHEMA_VERSION:
        raise InvalidRecordError(f"unsupported schema version {version!r}")
    try:
        return make_trade(
            exchange=data["exchange"],
            symbol=data["symbol"],
            trade_id=data["trade_id"],
            price=data["price"],
            quantity=data["quantity"],
            is_buyer_maker=data["is_buyer_maker"],
            trade_time=data["trade_time"],
            event_time=data["event_time"],
            received_at=data["received_at"],
        )
    except KeyError as exc:
        raise InvalidRecordError(f"missing field {exc.args[0]!r}") from None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What goes to ``market.trades.dlq``: the raw payload (as text) and why it was refused."""

    source: str  # "ingest:<exchange>" or "consumer:<group>"
    reason: str
    raw: str
    received_at: int
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    def encode(self) -> bytes:
        """The DLQ message value (JSON)."""
        return orjson.dumps(
            {
                "v": SCHEMA_VERSION,
                "source": self.source,
                "reason": self.reason,
                "raw": self.raw,
                "received_at": self.received_at,
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
            }
        )
