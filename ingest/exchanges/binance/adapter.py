"""Binance spot ``@trade`` streams: combined-stream URLs, frame parsing, REST rows for backfill.

Frames are bare events or combined-stream envelopes ``{"stream": ..., "data": {...}}``. Old recordings carry
the order-id fields ``b``/``a`` removed on 2024-06-18; they are ignored. ``m`` true means the buyer was the maker.
"""

from __future__ import annotations

import re
from typing import Any

from ingest.exchanges.base import (
    ACK,
    ERROR,
    SHUTDOWN,
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
from ingest.records import InvalidRecordError, TradeRecord, make_trade

EXCHANGE = "binance"
#: Binance closes a connection after 24 h; ingest reconnects itself a little earlier.
MAX_STREAMS_PER_CONNECTION = 1024
_SYMBOL = re.compile(r"[a-z0-9]{2,20}")


def parse_event(data: Any, raw: str | bytes, received_at: int, result: ParseResult) -> None:
    """Add one event (the ``data`` of an envelope, or a bare event) to ``result``."""
    if not isinstance(data, dict):
        result.bad.append(BadInput("event is not a JSON object", to_text(raw)))
        return
    kind = data.get("e")
    if kind == "trade":
        try:
            result.trades.append(
                make_trade(
                    exchange=EXCHANGE,
                    symbol=data["s"],
                    trade_id=data["t"],
                    price=data["p"],
                    quantity=data["q"],
                    is_buyer_maker=data["m"],
                    trade_time=data["T"],
                    event_time=data["E"],
                    received_at=received_at,
                )
            )
        except KeyError as exc:
            result.bad.append(BadInput(f"missing field {exc.args[0]!r}", to_text(raw)))
        except InvalidRecordError as exc:
            result.bad.append(BadInput(exc.reason, to_text(raw)))
    elif kind == "serverShutdown":
        result.events.append(ControlEvent(SHUTDOWN, {"event_time": data.get("E")}))
    else:
        result.bad.append(BadInput(f"unknown event {str(kind)[:40]!r}", to_text(raw)))


def parse_frame(raw: str | bytes, received_at: int) -> ParseResult:
    """Parse one Binance frame (never raises)."""
    result = ParseResult()
    message = json_object(raw, result)
    if message is None:
        return result
    data = message.get("data")
    if "stream" in message and data is not None:
        parse_event(data, raw, received_at, result)
    elif "e" in message:
        parse_event(message, raw, received_at, result)
    elif "error" in message:
        result.events.append(ControlEvent(ERROR, {"error": message["error"], "id": message.get("id")}))
    elif "result" in message and "id" in message:
        result.events.append(ControlEvent(ACK, {"result": message["result"], "id": message["id"]}))
    else:
        result.bad.append(BadInput("unknown message: no event type", to_text(raw)))
    return result


def trade_from_rest(symbol: str, row: Any, received_at: int) -> TradeRecord:
    """A ``historicalTrades`` row as a record (REST rows carry no event time: the trade time stands in)."""
    if not isinstance(row, dict):
        raise InvalidRecordError("REST trade row is not a JSON object")
    try:
        return make_trade(
            exchange=EXCHANGE,
            symbol=symbol,
            trade_id=row["id"],
            price=row["price"],
            quantity=row["qty"],
            is_buyer_maker=row["isBuyerMaker"],
            trade_time=row["time"],
            event_time=row["time"],
            received_at=received_at,
        )
    except KeyError as exc:
        raise InvalidRecordError(f"missing field {exc.args[0]!r}") from None


def combined_plans(ws_url: str, symbols: list[str], stream: str) -> list[ConnectionPlan]:
    """Combined-stream URLs of ``<symbol>@<stream>`` (``trade``; the books' ``depth@100ms``), 1024 a connection."""
    base = ws_url.rstrip("/")
    plans = []
    for start in range(0, len(symbols), MAX_STREAMS_PER_CONNECTION):
        chunk = tuple(symbols[start : start + MAX_STREAMS_PER_CONNECTION])
        streams = "/".join(f"{s}@{stream}" for s in chunk)
        plans.append(ConnectionPlan(url=f"{base}/stream?streams={streams}", symbols=chunk))
    return plans


class BinanceExchange(Exchange):
    """Combined ``@trade`` streams, at most 1024 per connection; ids are consecutive, gaps are backfilled."""

    name = EXCHANGE
    spelling = SymbolSpelling(_SYMBOL, "symbol: {symbol!r} (letters and digits, e.g. btcusdt)", lower_case=True)
    consecutive_ids = True
    supports_backfill = True

    def plans(self, symbols: list[str]) -> list[ConnectionPlan]:
        """One combined-stream URL per 1024 symbols; the streams are in the URL, so nothing to send."""
        return combined_plans(self.ws_url, symbols, "trade")

    def parser(self) -> FrameParser:
        """A stateless parser: every Binance frame stands alone."""
        return StatelessParser(parse_frame)
