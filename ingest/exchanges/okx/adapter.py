"""OKX v5 public ``trades`` channel: subscribe messages, frame parsing, keepalive, and the REST
``/api/v5/market/history-trades`` rows gap backfill reads.

A data frame is ``{"arg":{"channel":"trades","instId":..},"data":[{"instId","tradeId","px","sz","side","ts"}]}``;
``side`` is the taker's, so ``is_buyer_maker = side == "sell"``. ``tradeId`` is a numeric string, consecutive per
instrument (the bundled recording steps by exactly 1). OKX aggregates the channel per taker order and price: a
trade with ``count`` n > 1 stands for the n fills ``tradeId - n + 1 .. tradeId`` (``sz`` their sum). The record
keeps ``tradeId``; the parser notes the run's first id and :class:`AggregateContinuity` takes the run as
continuing the ids, so an aggregate is not a gap (REST, whose rows are single fills, would otherwise backfill fills
the aggregate already holds). Replies are ``{"event":"subscribe"|"unsubscribe"|"error",..}``; OKX closes a
connection quiet for 30 s, so the plan's keepalive sends the text ``ping``, answered ``pong``.
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
    json_object,
    to_text,
)
from ingest.exchanges.descriptor import SymbolSpelling
from ingest.gaps import DUPLICATE, GAP, NEXT, Gap, TradeIdContinuity
from ingest.records import InvalidRecordError, TradeRecord, make_trade

EXCHANGE = "okx"
_INST_ID = re.compile(r"[A-Z0-9]{1,12}-[A-Z0-9]{1,12}")
#: OKX allows at most 480 subscribe requests an hour per connection and a request of at most 64 KB: 100 args a
#: message keeps well inside it.
ARGS_PER_MESSAGE = 100
#: the keepalive OKX documents: the text ``ping``, answered by the text ``pong``
PING = "ping"
PONG = "pong"
#: aggregates noted by the parser and not yet checked (the id check takes each as it comes): a bound, not a need
MAX_PENDING_RUNS = 100_000

Runs = dict[tuple[str, int], int]
"""(instrument, last trade id) -> first trade id of an aggregated trade (``count`` > 1)."""


def _trade_id(record: TradeRecord) -> int:
    return record.trade_id


def _millis(value: Any, name: str) -> int:
    # OKX writes times as strings of epoch milliseconds.
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 15:
        raise InvalidRecordError(f"{name} must be a string of epoch milliseconds, got {str(value)[:40]!r}")
    return int(value)


def _count(row: dict[str, Any]) -> int:
    # How many fills the trade aggregates: "count" when present (OKX writes it as a string), else 1.
    value = row.get("count", "1")
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or not 0 < len(value) <= 9:
        raise InvalidRecordError(f"count must be a string of a positive integer, got {str(value)[:40]!r}")
    if int(value) < 1:
        raise InvalidRecordError(f"count must be a string of a positive integer, got {value!r}")
    return int(value)


def _record(row: Any, symbol: str | None, received_at: int, event_time: int | None) -> TradeRecord:
    """A trade object (WebSocket ``data`` item or REST row: the same fields) as a record."""
    if not isinstance(row, dict):
        raise InvalidRecordError("trade is not a JSON object")
    try:
        side = row["side"]
        if side not in ("buy", "sell"):
            raise InvalidRecordError(f"side must be buy or sell, got {str(side)[:20]!r}")
        trade_id = row["tradeId"]
        if not isinstance(trade_id, str) or not trade_id.isascii() or not trade_id.isdigit():
            raise InvalidRecordError(f"tradeId must be a numeric string, got {str(trade_id)[:40]!r}")
        trade_time = _millis(row["ts"], "ts")
        return make_trade(
            exchange=EXCHANGE,
            symbol=row["instId"] if symbol is None else symbol,
            trade_id=trade_id,
            price=row["px"],
            quantity=row["sz"],
            is_buyer_maker=side == "sell",
            trade_time=trade_time,
            event_time=trade_time if event_time is None else event_time,
            received_at=received_at,
        )
    except KeyError as exc:
        raise InvalidRecordError(f"missing field {exc.args[0]!r}") from None


def parse_frame(raw: str | bytes, received_at: int, runs: Runs | None = None) -> ParseResult:
    """Parse one OKX v5 public frame (never raises); aggregated trades' first ids go to ``runs`` when given."""
    result = ParseResult()
    if raw in (PONG, PONG.encode()):
        result.events.append(ControlEvent(HEARTBEAT, {}))
        return result
    message = json_object(raw, result)
    if message is None:
        return result
    event = message.get("event")
    if event is not None:
        if event in ("subscribe", "unsubscribe"):
            result.events.append(ControlEvent(ACK, {"event": event, "arg": message.get("arg")}))
        elif event == "error":
            result.events.append(ControlEvent(ERROR, {"code": message.get("code"), "msg": message.get("msg")}))
        else:
            result.events.append(ControlEvent(str(event)[:40], {"message": message}))
        return result
    arg = message.get("arg")
    channel = arg.get("channel") if isinstance(arg, dict) else None
    if channel != "trades":
        result.bad.append(BadInput(f"unknown channel {str(channel)[:40]!r}", to_text(raw)))
        return result
    data = message.get("data")
    if not isinstance(data, list):
        result.bad.append(BadInput("trades frame without a data list", to_text(raw)))
        return result
    for row in data:
        try:
            record = _record(row, None, received_at, None)
            count = _count(row)
            if count > record.trade_id + 1:
                raise InvalidRecordError(f"count {count} is more than the ids up to tradeId {record.trade_id}")
        except InvalidRecordError as exc:
            result.bad.append(BadInput(exc.reason, orjson.dumps(row, default=str).decode()))
            continue
        result.trades.append(record)
        if count > 1 and runs is not None:
            runs[(record.symbol, record.trade_id)] = record.trade_id - count + 1
            if len(runs) > MAX_PENDING_RUNS:
                del runs[next(iter(runs))]  # the oldest: a run nobody checked (ingest checks every trade)
    # Oldest first whatever order the frame used: the id tracker would drop a descending run as repeats.
    result.trades.sort(key=_trade_id)
    return result


class OkxParser(FrameParser):
    """The parser of one ingest process: notes each aggregated trade's run of ids for :class:`AggregateContinuity`."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs

    def parse(self, raw: str | bytes, received_at: int) -> ParseResult:
        """Parse one frame (never raises)."""
        return parse_frame(raw, received_at, self.runs)


class AggregateContinuity(TradeIdContinuity):
    """The id check for aggregated trades: a trade standing for ids ``first..last`` (noted by :class:`OkxParser`)
    continues the ids when ``first`` is the next id expected, and leaves a gap only below ``first``."""

    __slots__ = ("runs",)

    def __init__(self, runs: Runs) -> None:
        super().__init__()
        self.runs = runs

    def check(self, symbol: str, trade_id: int, trade_time: int | None = None) -> int:
        """``NEXT``, ``DUPLICATE`` or ``GAP``, judged on the run's first id."""
        first = self.runs.pop((symbol, trade_id), trade_id)
        if first == trade_id:
            return super().check(symbol, trade_id, trade_time)
        last = self.last.get(symbol)
        if last is not None and trade_id <= last:
            return DUPLICATE
        if last is not None and first > last + 1:
            self.gap = Gap(symbol, last + 1, first - 1, self.times.get(symbol))
            return GAP
        # The run continues the ids (or overlaps ids a backfill brought one by one: kept, it is the newer trade).
        self.last[symbol] = trade_id
        if trade_time is not None:
            self.times[symbol] = trade_time
        return NEXT


def trade_from_rest(symbol: str, row: Any, received_at: int) -> TradeRecord:
    """A ``/api/v5/market/history-trades`` row (the WebSocket's fields) as a record of ``symbol``; REST rows carry
    no event time: the trade time stands in."""
    return _record(row, symbol, received_at, None)


def rest_row_id(row: Any) -> int | None:
    """The trade id of a REST row, None when it has none."""
    value = row.get("tradeId") if isinstance(row, dict) else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return None


class OkxExchange(Exchange):
    """One connection to ``/ws/v5/public`` subscribed to ``trades`` per instrument; ids are consecutive per
    instrument, gaps are backfilled over REST ``history-trades`` by trade id."""

    name = EXCHANGE
    spelling = SymbolSpelling(_INST_ID, "instrument id: {symbol!r} (e.g. BTC-USDT)", separator="-")
    consecutive_ids = True
    supports_backfill = True

    def plans(self, symbols: list[str]) -> list[ConnectionPlan]:
        """One connection to ``<ws_url>/ws/v5/public``; subscribe after every (re)connect."""
        messages = tuple(
            orjson.dumps({"op": "subscribe", "args": [{"channel": "trades", "instId": s} for s in chunk]}).decode()
            for chunk in (symbols[i : i + ARGS_PER_MESSAGE] for i in range(0, len(symbols), ARGS_PER_MESSAGE))
        )
        url = f"{self.ws_url}/ws/v5/public"
        return [ConnectionPlan(url=url, symbols=tuple(symbols), subscribe=messages, keepalive=PING, keepalive_s=25.0)]

    def __init__(self, ws_url: str) -> None:
        super().__init__(ws_url)
        self._runs: Runs = {}  # shared by this adapter's parser and id check

    def parser(self) -> FrameParser:
        """A parser noting aggregated trades' runs of ids; duplicates and gaps are the id check's."""
        return OkxParser(self._runs)

    def continuity(self) -> TradeIdContinuity:
        """The id check that takes an aggregated trade's run of ids as continuing them."""
        return AggregateContinuity(self._runs)
