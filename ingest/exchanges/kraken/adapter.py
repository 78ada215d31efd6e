"""Kraken WebSocket v2 ``trade`` channel: subscribe message and frame parsing.

Price and quantity are JSON numbers: they are parsed with the standard library's ``json`` keeping the number's
exact text (``orjson`` would turn them into floats). ``side`` is the taker's; trade ids are consecutive per pair.
The REST ``/0/public/Trades`` rows gap backfill reads (:mod:`ingest.exchanges.kraken.backfill`) are parsed here too.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from ingest.exchanges.base import (
    ACK,
    ERROR,
    HEARTBEAT,
    STATUS,
    BadInput,
    ConnectionPlan,
    ControlEvent,
    Exchange,
    FrameParser,
    ParseResult,
    StatelessParser,
    json_object,
    rfc3339_ms,
    to_text,
)
from ingest.exchanges.descriptor import SymbolSpelling
from ingest.records import InvalidRecordError, TradeRecord, make_trade

EXCHANGE = "kraken"
_PAIR = re.compile(r"[A-Z0-9]{1,12}/[A-Z0-9]{1,12}")


class JsonNumber(str):
    """A JSON number kept as the exact text the exchange sent (Decimal would rewrite ``0.00000010``)."""

    __slots__ = ()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: str | bytes) -> Any:
    """Strict JSON with numbers kept as their text (NaN/Infinity refused)."""
    return json.loads(raw, parse_float=JsonNumber, parse_int=_int_or_text, parse_constant=_reject_constant)


def _int_or_text(text: str) -> int:
    # Integers stay ints (trade ids); as prices their str() is the exact text (JSON ints have one spelling).
    return int(text)


def parse_frame(raw: str | bytes, received_at: int) -> ParseResult:
    """Parse one Kraken v2 frame (never raises)."""
    result = ParseResult()
    message = json_object(raw, result, loads)
    if message is None:
        return result
    channel = message.get("channel")
    if channel == "trade":
        data = message.get("data")
        if not isinstance(data, list):
            result.bad.append(BadInput("trade frame without a data list", to_text(raw)))
            return result
        for trade in data:
            _trade(trade, received_at, result)
        # Oldest first whatever order the frame used: the id tracker would drop a descending run as repeats.
        result.trades.sort(key=_trade_id)
    elif channel == "heartbeat":
        result.events.append(ControlEvent(HEARTBEAT, {}))
    elif channel == "status":
        result.events.append(ControlEvent(STATUS, {"data": message.get("data")}))
    elif "method" in message:
        kind = ACK if message.get("success") is True else ERROR
        result.events.append(ControlEvent(kind, {"method": message.get("method"), "error": message.get("error")}))
    else:
        result.bad.append(BadInput(f"unknown channel {str(channel)[:40]!r}", to_text(raw)))
    return result


def _verbatim(value: Any) -> Any:
    if isinstance(value, JsonNumber):
        return orjson.Fragment(str.__str__(value))  # the number exactly as received, not as a string
    raise TypeError(type(value).__name__)  # pragma: no cover - parsed JSON holds nothing else


def _trade_id(record: TradeRecord) -> int:
    return record.trade_id


def _dump(trade: Any) -> str:
    """The trade as JSON for a dead letter, numbers written back as the exchange sent them."""
    try:
        return orjson.dumps(trade, default=_verbatim, option=orjson.OPT_PASSTHROUGH_SUBCLASS).decode()
    except TypeError:  # integers beyond 64 bits: the stdlib writes them (numbers kept as text then)
        return json.dumps(trade, default=str)


def _trade(trade: Any, received_at: int, result: ParseResult) -> None:
    if not isinstance(trade, dict):
        result.bad.append(BadInput("trade is not a JSON object", _dump(trade)))
        return
    try:
        side = trade["side"]
        if side not in ("buy", "sell"):
            raise InvalidRecordError(f"side must be buy or sell, got {str(side)[:20]!r}")
        price, quantity = trade["price"], trade["qty"]
        for name, value in (("price", price), ("qty", quantity)):
            if not isinstance(value, (JsonNumber, int)) or isinstance(value, bool):
                raise InvalidRecordError(f"{name} must be a JSON number, got {type(value).__name__}")
        try:
            trade_time = rfc3339_ms(trade["timestamp"])
        except ValueError as exc:
            raise InvalidRecordError(str(exc)) from None
        record = make_trade(
            exchange=EXCHANGE,
            symbol=trade["symbol"],
            trade_id=trade["trade_id"],
            price=str(price),
            quantity=str(quantity),
            is_buyer_maker=side == "sell",
            trade_time=trade_time,
            event_time=trade_time,
            received_at=received_at,
        )
    except KeyError as exc:
        result.bad.append(BadInput(f"missing field {exc.args[0]!r}", _dump(trade)))
        return
    except InvalidRecordError as exc:
        result.bad.append(BadInput(exc.reason, _dump(trade)))
        return
    result.trades.append(record)


#: Kraken's REST names some assets differently from WebSocket v2 (``BTC/USD`` is ``XBTUSD`` there).
REST_ASSETS = {"BTC": "XBT", "DOGE": "XDG"}


def rest_pair(symbol: str) -> str:
    """The REST ``pair`` of a WebSocket v2 symbol: ``BTC/USD`` -> ``XBTUSD``. The answer's result key may differ
    again (``XXBTZUSD``): readers take the result's one key that is not ``last``."""
    base, _, quote = symbol.partition("/")
    return REST_ASSETS.get(base, base) + REST_ASSETS.get(quote, quote)


def rest_time_ms(value: Any) -> int:
    """Epoch ms of a REST trade time (seconds with a fraction, kept exact as text); ``ValueError`` if malformed."""
    if isinstance(value, bool) or not isinstance(value, (JsonNumber, int)):
        raise ValueError(f"time must be a JSON number, got {type(value).__name__}")
    try:
        seconds = Decimal(str.__str__(value) if isinstance(value, JsonNumber) else value)
    except InvalidOperation:
        raise ValueError(f"time is not a number: {str(value)[:40]!r}") from None
    return int(seconds * 1000)


def rest_row_id(row: Any) -> int | None:
    """The trade id (last item) of a REST row, None when it has none."""
    if isinstance(row, list) and row and type(row[-1]) is int:
        return int(row[-1])
    return None


def trade_from_rest(symbol: str, row: Any, received_at: int) -> TradeRecord:
    """A ``/0/public/Trades`` row ``[price, volume, time, "b"|"s", "m"|"l", misc, trade_id]`` as a record of
    ``symbol`` (the WebSocket spelling). Price and volume are decimal strings kept verbatim; ``b``/``s`` is the
    taker's side, as on the WebSocket."""
    if not isinstance(row, list) or len(row) < 7:
        raise InvalidRecordError("REST trade row is not a list of 7 items")
    price, volume, when, side = row[0], row[1], row[2], row[3]
    if side not in ("b", "s"):
        raise InvalidRecordError(f"side must be b or s, got {str(side)[:20]!r}")
    try:
        trade_time = rest_time_ms(when)
    except ValueError as exc:
        raise InvalidRecordError(str(exc)) from None
    return make_trade(
        exchange=EXCHANGE,
        symbol=symbol,
        trade_id=row[6],
        price=price,
        quantity=volume,
        is_buyer_maker=side == "s",
        trade_time=trade_time,
        event_time=trade_time,
        received_at=received_at,
    )


class KrakenExchange(Exchange):
    """One connection subscribed to the ``trade`` channel with a snapshot; ids are consecutive per pair, gaps are
    backfilled over REST ``/0/public/Trades``."""

    name = EXCHANGE
    spelling = SymbolSpelling(_PAIR, "pair: {symbol!r} (e.g. BTC/USD)", separator="/")
    consecutive_ids = True
    supports_backfill = True

    def plans(self, symbols: list[str]) -> list[ConnectionPlan]:
        """One connection; subscribe (with the recent-trades snapshot) after every (re)connect."""
        message = orjson.dumps(
            {"method": "subscribe", "params": {"channel": "trade", "symbol": symbols, "snapshot": True}}
        ).decode()
        return [ConnectionPlan(url=self.ws_url, symbols=tuple(symbols), subscribe=(message,))]

    def parser(self) -> FrameParser:
        """A stateless parser: duplicates and gaps are handled per pair by the runner's id tracker."""
        return StatelessParser(parse_frame)
