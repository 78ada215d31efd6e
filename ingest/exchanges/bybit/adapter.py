"""Bybit v5 public ``publicTrade.<symbol>`` topic (spot): subscribe messages, frame parsing, keepalive, and the REST
``/v5/market/recent-trade`` rows the reconnect catch-up reads.

A data frame is ``{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":..,"data":[{"T","s","S","v","p","i","BT",
"seq"}]}``, its trades in matching order: ``T`` the fill time (ms), ``S`` the taker's side (``Buy``/``Sell``), ``v``
and ``p`` size and price as decimal strings, ``i`` the trade id, a **string** (numeric on spot, UUID-like in the
documentation's example), ``seq`` the matching engine's cross sequence. The record's ``trade_id`` is
:func:`ingest.records.trade_key` of ``i`` and keeps ``i`` itself as ``trade_ref`` when it is not an integer.

What ingest can and cannot see here: Bybit's ids are not consecutive per symbol (spot ids are shared by every
symbol; UUIDs have no order) and ``seq`` also advances on order-book events, so neither reveals a missed trade.
Repeats are recognised by id (:class:`ingest.gaps.RecentIdContinuity`); what a dropped connection missed is fetched
back from ``recent-trade`` on every reconnect, which serves only the newest 60 spot trades: a drop longer than that
is counted as an unrecoverable range (``backfill_unrecoverable``), with its time bounds, never silently.

Replies are ``{"success":true|false,"ret_msg":..,"conn_id":..,"op":"subscribe"|"ping"}``; Bybit closes a
connection without a ``{"op":"ping"}`` for too long, and recommends one every 20 s.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ingest.exchanges.base import (
    ACK,
    ERROR,
    HEARTBEAT,
    BadInput,
    ConnectionPlan,
    ControlEvent,
    Exchange,
    FrameParser,
    ParseResult,
    StatelessParser,
    json_object,
    to_text,
)
from ingest.exchanges.descriptor import SymbolSpelling
from ingest.gaps import RecentIdContinuity, TradeIdContinuity
from ingest.records import InvalidRecordError, TradeRecord, make_trade, trade_key

EXCHANGE = "bybit"
_SYMBOL = re.compile(r"[A-Z0-9]{2,24}")
#: Bybit's spot WebSocket takes at most 10 args in one subscribe request
ARGS_PER_MESSAGE = 10
TOPIC = "publicTrade."
#: the keepalive Bybit documents (every 20 s)
PING = '{"op":"ping"}'
_SIDES = {"Buy": False, "Sell": True}  # the taker's side -> is_buyer_maker


def _millis(value: Any, name: str) -> int:
    # The WebSocket writes T as a JSON number, REST writes time as a string: both epoch milliseconds.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 15:
        return int(value)
    if type(value) is int:
        return value
    raise InvalidRecordError(f"{name} must be epoch milliseconds, got {str(value)[:40]!r}")


def _record(
    symbol: Any, trade_ref: Any, price: Any, size: Any, side: Any, when: Any, received_at: int, event_time: int | None
) -> TradeRecord:
    if type(side) is not str or side not in _SIDES:  # type() first: a list or dict is not hashable
        raise InvalidRecordError(f"side must be Buy or Sell, got {str(side)[:20]!r}")
    if not isinstance(trade_ref, str) or not trade_ref:
        raise InvalidRecordError(f"trade id must be a non-empty string, got {str(trade_ref)[:40]!r}")
    trade_time = _millis(when, "trade time")
    key = trade_key(trade_ref)
    return make_trade(
        exchange=EXCHANGE,
        symbol=symbol,
        trade_id=key,
        # A numeric id (spot) is its own key: without a trade_ref the trade takes make_trade's fast path.
        trade_ref=None if str(key) == trade_ref else trade_ref,
        price=price,
        quantity=size,
        is_buyer_maker=_SIDES[side],
        trade_time=trade_time,
        event_time=trade_time if event_time is None else event_time,
        received_at=received_at,
    )


def _ws_record(row: Any, received_at: int, event_time: int | None) -> TradeRecord:
    if not isinstance(row, dict):
        raise InvalidRecordError("trade is not a JSON object")
    try:
        return _record(row["s"], row["i"], row["p"], row["v"], row["S"], row["T"], received_at, event_time)
    except KeyError as exc:
        raise InvalidRecordError(f"missing field {exc.args[0]!r}") from None


def parse_frame(raw: str | bytes, received_at: int) -> ParseResult:
    """Parse one Bybit v5 public frame (never raises)."""
    result = ParseResult()
    message = json_object(raw, result)
    if message is None:
        return result
    topic = message.get("topic")
    if topic is None:
        op = message.get("op")
        if op in ("ping", "pong"):
            result.events.append(ControlEvent(HEARTBEAT, {}))
        elif message.get("success") is True:
            result.events.append(ControlEvent(ACK, {"op": op, "ret_msg": message.get("ret_msg")}))
        else:
            result.events.append(ControlEvent(ERROR, {"op": op, "ret_msg": str(message.get("ret_msg"))[:200]}))
        return result
    if not isinstance(topic, str) or not topic.startswith(TOPIC):
        result.bad.append(BadInput(f"unknown topic {str(topic)[:40]!r}", to_text(raw)))
        return result
    data = message.get("data")
    if not isinstance(data, list):
        result.bad.append(BadInput("publicTrade frame without a data list", to_text(raw)))
        return result
    ts = message.get("ts")
    event_time = ts if type(ts) is int else None
    for row in data:
        try:
            result.trades.append(_ws_record(row, received_at, event_time))
        except InvalidRecordError as exc:
            result.bad.append(BadInput(exc.reason, orjson.dumps(row, default=str).decode()))
    return result


def trade_from_rest(symbol: str, row: Any, received_at: int) -> TradeRecord:
    """A ``/v5/market/recent-trade`` row (``execId``, ``symbol``, ``price``, ``size``, ``side``, ``time``) as a
    record of ``symbol``; REST rows carry no event time: the trade time stands in."""
    if not isinstance(row, dict):
        raise InvalidRecordError("trade is not a JSON object")
    try:
        return _record(symbol, row["execId"], row["price"], row["size"], row["side"], row["time"], received_at, None)
    except KeyError as exc:
        raise InvalidRecordError(f"missing field {exc.args[0]!r}") from None


class BybitExchange(Exchange):
    """One connection to ``/v5/public/spot`` subscribed to ``publicTrade.<symbol>``; repeats are recognised by id,
    and every reconnect catches up from REST ``recent-trade`` (see the module)."""

    name = EXCHANGE
    spelling = SymbolSpelling(_SYMBOL, "spot symbol: {symbol!r} (e.g. BTCUSDT)")
    consecutive_ids = False
    supports_backfill = True

    def plans(self, symbols: list[str]) -> list[ConnectionPlan]:
        """One connection to ``<ws_url>/v5/public/spot``; subscribe (10 topics a request) after every (re)connect."""
        messages = tuple(
            orjson.dumps({"op": "subscribe", "args": [f"{TOPIC}{s}" for s in chunk]}).decode()
            for chunk in (symbols[i : i + ARGS_PER_MESSAGE] for i in range(0, len(symbols), ARGS_PER_MESSAGE))
        )
        url = f"{self.ws_url}/v5/public/spot"
        return [ConnectionPlan(url=url, symbols=tuple(symbols), subscribe=messages, keepalive=PING, keepalive_s=20.0)]

    def parser(self) -> FrameParser:
        """Frames stand alone."""
        return StatelessParser(parse_frame)

    def continuity(self) -> TradeIdContinuity:
        """Repeats recognised by id among the recent trades; no id reveals a gap (see the module)."""
        return RecentIdContinuity()
