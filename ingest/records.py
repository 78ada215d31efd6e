"""The normalised trade record on ``market.trades`` (schema version 1) and dead-letter records.

Wire format: one UTF-8 JSON object per Kafka message, keyed by ``<exchange>:<symbol>`` so each symbol stays
ordered in one partition::

    {"v": 1, "exchange": "binance", "symbol": "BTCUSDT", "trade_id": 3735683259,
     "price": "61837.63000000", "quantity": "0.02000000", "is_buyer_maker": true,
     "trade_time": 1723161255342, "event_time": 1723161255343, "received_at": 1723161256612}

``price`` and ``quantity`` are the exchange's decimal strings, unchanged (never floats); times are epoch
milliseconds (``received_at`` is the ingest clock). ``is_buyer_maker`` true means the taker sold.

An exchange whose trade ids are strings that are not integers (Bybit's UUID-like ids) adds ``"trade_ref"``, the
exchange's own id, unchanged; ``trade_id`` is then :func:`trade_key` of it, a 63-bit integer derived from the
string, so the natural key stays (exchange, symbol, trade_id) everywhere. The field is optional within schema
version 1: a record without it is what every integer-id exchange sends, and a reader that predates it ignores it.

Validation never raises anything but :class:`InvalidRecordError`, whatever the input (non-hashable values, Unicode
digits, integers too long to print, ...): a hostile record must become a dead letter, never a crash.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import orjson
from django.core.signals import setting_changed
from django.dispatch import receiver

from ingest.exchanges import names

SCHEMA_VERSION = 1
#: The exchanges a record may name: the registry's (``ingest.exchanges.EXCHANGE_MAP``).
EXCHANGES = frozenset(names())
# Trade times outside [2009-01-01, 2100-01-01) are not plausible epoch milliseconds.
_MIN_MS = 1_230_768_000_000
_MAX_MS = 4_102_444_800_000
_MAX_ID = 2**63
#: Default of ``settings.TRADE_MAX_CLOCK_SKEW_MS``: how far a trade time may lie beyond its ``received_at``.
DEFAULT_MAX_CLOCK_SKEW_MS = 60_000
#: Longest excerpt of a refused value quoted in a reason (reasons travel in dead letters and logs).
_SHOW_MAX = 40


class InvalidRecordError(ValueError):
    """A record that must not reach ``market.trades``; ``reason`` says why (it goes to the DLQ)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def compact(value: bytes) -> bytes:
    """A copy of ``value`` that occupies its length: ``orjson.dumps`` (3.13) returns bytes keeping its whole output
    buffer, 4 KB for a 235-byte trade. Ingest holds encoded records until Kafka acknowledges them (through an
    outage: hundreds of thousands), so that was 4 KB a record: the 787 MB of docs/RELIABILITY.md's kafka-down."""
    return bytes(memoryview(value))


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
    #: the exchange's own trade id when it is a string that is not an integer (``trade_id`` is its key), else None
    trade_ref: str | None = None

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
        """The wire form as a dict (schema version included; ``trade_ref`` only when there is one)."""
        wire: dict[str, Any] = {
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
        if self.trade_ref is not None:
            wire["trade_ref"] = self.trade_ref
        return wire

    def encode(self) -> bytes:
        """The Kafka message value (a right-sized copy: see :func:`compact`)."""
        return compact(orjson.dumps(self.to_dict()))


def _show(value: Any) -> str:
    """A short, safe ``repr`` for a reason: bounded, and never raising (``repr`` of an int over 4,300 digits does)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    if isinstance(value, str) and len(value) > _SHOW_MAX:
        value = value[:_SHOW_MAX]
    elif isinstance(value, (list, tuple, dict, set)) and len(value) > 8:
        return f"<{type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a reason must never fail to build
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _SHOW_MAX + 2 else text[:_SHOW_MAX] + "..."


#: What a string trade id may be: printable ASCII without blanks, at most 64 characters (Bybit's UUIDs are 36).
_TRADE_REF = re.compile(r"[!-~]{1,64}").fullmatch


def trade_key(ref: str) -> int:
    """The integer ``trade_id`` of an exchange's string trade id: the integer itself when the string is one (at most
    19 ASCII digits below 2**63: Bybit's spot ids), else the first 63 bits of its BLAKE2b-64 digest.

    Deterministic (the WebSocket and REST spellings of one trade get the same key, so the natural key de-duplicates
    them) and spread over 63 bits: two different ids of one market collide only with a probability of about
    n**2 / 2**64 among the n trades sharing a millisecond, where the natural key compares them.
    """
    if ref.isascii() and ref.isdigit() and len(ref) <= 19 and int(ref) < _MAX_ID:
        return int(ref)
    return int.from_bytes(hashlib.blake2b(ref.encode(), digest_size=8).digest(), "big") >> 1


def _trade_ref(trade_id: int, trade_ref: Any) -> str | None:
    """``trade_ref`` checked: None, or a string id whose :func:`trade_key` is ``trade_id`` (and not an integer)."""
    if trade_ref is None:
        return None
    if type(trade_ref) is not str or not _TRADE_REF(trade_ref):
        raise InvalidRecordError(f"trade_ref must be up to 64 printable ASCII characters, got {_show(trade_ref)}")
    if trade_key(trade_ref) != trade_id:
        raise InvalidRecordError(f"trade_id {_show(trade_id)} is not the key of trade_ref {_show(trade_ref)}")
    if trade_ref.isdigit():
        return None  # an integer id is the trade_id itself: nothing more to keep
    return trade_ref


# Read once: a settings lookup per trade doubled make_trade's cost (3 us -> 6.4 us measured); tests that change the
# setting reset it through Django's setting_changed signal.
_max_skew_ms: int | None = None


def max_clock_skew_ms() -> int:
    """``settings.TRADE_MAX_CLOCK_SKEW_MS`` when Django is configured, else the default (scripts, simulators)."""
    global _max_skew_ms
    if _max_skew_ms is None:
        try:
            from django.conf import settings

            _max_skew_ms = int(getattr(settings, "TRADE_MAX_CLOCK_SKEW_MS", DEFAULT_MAX_CLOCK_SKEW_MS))
        except Exception:  # noqa: BLE001 - ImproperlyConfigured outside Django: the documented default applies
            return DEFAULT_MAX_CLOCK_SKEW_MS
    return _max_skew_ms


@receiver(setting_changed)
def _forget_skew(*, setting: str, **kwargs: Any) -> None:
    global _max_skew_ms
    if setting == "TRADE_MAX_CLOCK_SKEW_MS":
        _max_skew_ms = None


def _decimal_string(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, Decimal, int)):
        raise InvalidRecordError(f"{name} must be a decimal string, got {type(value).__name__}")
    if isinstance(value, int) and value.bit_length() > 128:
        raise InvalidRecordError(f"{name} is out of range: {_show(value)}")
    text = str(value).strip()
    # Decimal() reads any Unicode digit ("\u0661" is 1), which PostgreSQL refuses: only ASCII spellings are numbers.
    if not text.isascii():
        raise InvalidRecordError(f"{name} is not a number: {_show(text)}")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InvalidRecordError(f"{name} is not a number: {_show(text)}") from None
    if not number.is_finite():
        raise InvalidRecordError(f"{name} is not finite: {_show(text)}")
    if number <= 0:
        raise InvalidRecordError(f"{name} must be positive, got {_show(text)}")
    return text


def _millis(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecordError(f"{name} must be integer milliseconds, got {type(value).__name__}")
    if not _MIN_MS <= value < _MAX_MS:
        raise InvalidRecordError(f"{name} is out of range: {_show(value)}")
    return value


def _check_skew(trade_time: int, received_at: int, skew_ms: int) -> None:
    # A trade "from the future" would become its symbol's latest trade for as long as the clock takes to catch up,
    # freezing the 24-hour window (which ends at the latest stored trade): refuse it instead.
    if trade_time > received_at + skew_ms:
        raise InvalidRecordError(
            f"trade_time {trade_time} is {trade_time - received_at} ms after received_at {received_at} "
            f"(more than the allowed clock skew of {skew_ms} ms)"
        )


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
    max_skew_ms: int | None = None,
    trade_ref: Any = None,
) -> TradeRecord:
    """Validate and build a :class:`TradeRecord`, raising :class:`InvalidRecordError` with a reason.

    ``trade_ref`` is the exchange's string trade id when it is not an integer; ``trade_id`` must then be
    :func:`trade_key` of it.

    ``max_skew_ms`` (default ``settings.TRADE_MAX_CLOCK_SKEW_MS``) bounds how far ``trade_time`` may lie after
    ``received_at``. Whatever the arguments, the only exception raised is :class:`InvalidRecordError`.
    """
    skew = max_clock_skew_ms() if max_skew_ms is None else max_skew_ms
    # Fast path: what well-formed feeds send (exact types, plain decimals, a normal symbol). Anything else takes
    # the checks below, which accept the same values in more spellings and name what is wrong.
    if (
        trade_ref is None
        and type(trade_id) is int
        and type(price) is str
        and type(quantity) is str
        and type(is_buyer_maker) is bool
        and type(trade_time) is int
        and type(event_time) is int
        and type(received_at) is int
        and type(symbol) is str
        and type(exchange) is str  # before "in": a list or dict exchange would raise TypeError (unhashable)
        and exchange in EXCHANGES
        and 0 <= trade_id < _MAX_ID
        and _MIN_MS <= trade_time < _MAX_MS
        and _MIN_MS <= event_time < _MAX_MS
        and _MIN_MS <= received_at < _MAX_MS
        and trade_time <= received_at + skew
        and _PLAIN_DECIMAL(price)
        and _PLAIN_DECIMAL(quantity)
        and price.strip("0.")
        and quantity.strip("0.")
        and _PLAIN_SYMBOL(symbol)
    ):
        return TradeRecord(
            exchange, symbol, trade_id, price, quantity, is_buyer_maker, trade_time, event_time, received_at
        )
    # type() first: "in" on a frozenset hashes the value, and a list or dict is not hashable (a TypeError).
    if type(exchange) is not str or exchange not in EXCHANGES:
        raise InvalidRecordError(f"unknown exchange {_show(exchange)}")
    if not isinstance(symbol, str) or not symbol.strip() or len(symbol) > 32:
        raise InvalidRecordError(f"symbol must be a non-empty string of at most 32 characters, got {_show(symbol)}")
    normal_symbol = symbol.strip().upper()
    # NUL and other control characters: PostgreSQL text cannot hold NUL, and none belongs in a symbol or a log line.
    if not normal_symbol.isprintable():
        raise InvalidRecordError(f"symbol has unprintable characters, got {_show(symbol)}")
    # isdigit() is also true for "\u00b2" and other Unicode digits int() refuses; 19 digits hold any 64-bit id
    # (and int() refuses strings over 4,300 digits with a ValueError).
    if isinstance(trade_id, str) and trade_id.isascii() and trade_id.isdigit() and len(trade_id) <= 19:
        trade_id = int(trade_id)
    if isinstance(trade_id, bool) or not isinstance(trade_id, int) or not 0 <= trade_id < _MAX_ID:
        raise InvalidRecordError(f"trade_id must be a non-negative 64-bit integer, got {_show(trade_id)}")
    if not isinstance(is_buyer_maker, bool):
        raise InvalidRecordError(f"is_buyer_maker must be a boolean, got {_show(is_buyer_maker)}")
    record = TradeRecord(
        exchange=exchange,
        symbol=normal_symbol,
        trade_id=trade_id,
        price=_decimal_string("price", price),
        quantity=_decimal_string("quantity", quantity),
        is_buyer_maker=is_buyer_maker,
        trade_time=_millis("trade_time", trade_time),
        event_time=_millis("event_time", event_time),
        received_at=_millis("received_at", received_at),
        trade_ref=_trade_ref(trade_id, trade_ref),
    )
    _check_skew(record.trade_time, record.received_at, skew)
    return record


def decode(value: bytes | str | None, max_skew_ms: int | None = None) -> TradeRecord:
    """Parse and validate one ``market.trades`` message value; :class:`InvalidRecordError` if it is bad.

    Nothing else is raised, whatever the bytes: the consumer turns the error into a dead letter and goes on.
    """
    if value is None:
        raise InvalidRecordError("empty message (no value)")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecordError(f"malformed JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise InvalidRecordError("record is not a JSON object")
    version = data.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InvalidRecordError(f"unsupported schema version {_show(version)}")
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
            max_skew_ms=max_skew_ms,
            trade_ref=data.get("trade_ref"),
        )
    except KeyError as exc:
        raise InvalidRecordError(f"missing field {exc.args[0]!r}") from None


#: Default of ``settings.DLQ_RAW_MAX_BYTES``: the prefix of a refused record a dead letter keeps.
DEFAULT_DLQ_RAW_MAX_BYTES = 64 * 1024
#: Longest reason a dead letter carries (an exception's text can be as long as the record it quotes).
REASON_MAX_CHARS = 1000


def bounded_raw(value: bytes | str | None, max_bytes: int) -> tuple[str, int]:
    """The first ``max_bytes`` bytes of a refused payload as text (invalid UTF-8 replaced) and its full length.

    Bounded so that a dead letter always fits the broker's message limit (1 MB by default) even when the refused
    record itself was near that limit: JSON escaping grows the text at most six-fold (control characters).
    """
    if value is None:
        return "", 0
    data = value.encode("utf-8", errors="replace") if isinstance(value, str) else bytes(value)
    head = data[:max_bytes]
    text = head.decode("utf-8", errors="replace") if len(data) <= max_bytes else _decode_cut(head)
    return text, len(data)


def _decode_cut(head: bytes) -> str:
    # final=False holds back a character split by the cut (dropped) while invalid bytes are still replaced.
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(head, final=False)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What goes to ``market.trades.dlq``: the raw payload (as text) and why it was refused.

    ``raw`` may be a prefix of the refused payload (see :func:`bounded_raw`); ``raw_length`` is the payload's full
    length in bytes (``None`` when unknown), ``raw_truncated`` says whether ``raw`` was cut.
    """

    source: str  # "ingest:<exchange>" or "consumer:<group>"
    reason: str
    raw: str
    received_at: int
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    raw_length: int | None = None
    raw_truncated: bool = False

    def encode(self) -> bytes:
        """The DLQ message value (JSON; a right-sized copy: see :func:`compact`)."""
        return compact(
            orjson.dumps(
                {
                    "v": SCHEMA_VERSION,
                    "source": self.source,
                    "reason": self.reason[:REASON_MAX_CHARS],
                    "raw": self.raw,
                    "received_at": self.received_at,
                    "topic": self.topic,
                    "partition": self.partition,
                    "offset": self.offset,
                    "raw_length": self.raw_length,
                    "raw_truncated": self.raw_truncated,
                }
            )
        )
