"""Coinbase Advanced Trade ``market_trades``: subscribe messages, frame parsing, snapshot de-duplication, and
the Coinbase Exchange REST trade rows gap backfill reads.

``side`` is the taker's side, so ``is_buyer_maker = side == "SELL"``. ``sequence_num`` counts frames per
connection: a jump means frames were missed (counted and logged). Trade ids are consecutive per product (the
bundled recording shows no hole in either product's ids, snapshot and updates alike), so the id check finds the
trades a drop or a missed frame lost and REST backfill fetches them (:mod:`ingest.exchanges.coinbase.backfill`).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import orjson

from ingest.exchanges.base import (
    ERROR,
    HEARTBEAT,
    SEQUENCE_GAP,
    SUBSCRIPTIONS,
    BadInput,
    ConnectionPlan,
    ControlEvent,
    Exchange,
    FrameParser,
    ParseResult,
    json_object,
    rfc3339_ms,
    to_text,
)
from ingest.exchanges.descriptor import SymbolSpelling
from ingest.records import InvalidRecordError, TradeRecord, make_trade

EXCHANGE = "coinbase"
_PRODUCT = re.compile(r"[A-Z0-9]{1,12}-[A-Z0-9]{1,12}")
#: Snapshot repeats are recent trades: remembering this many ids per product is enough to drop them.
SEEN_PER_PRODUCT = 10_000


def _trade_id(record: TradeRecord) -> int:
    return record.trade_id


class CoinbaseParser(FrameParser):
    """Keeps the ids already published (per product) and the connection's last ``sequence_num``."""

    def __init__(self, seen_per_product: int = SEEN_PER_PRODUCT) -> None:
        self.seen_per_product = seen_per_product
        self._seen: dict[str, OrderedDict[str, None]] = {}
        self._last_sequence: int | None = None
        self.duplicates = 0

    def connection_reset(self) -> None:
        """Sequence numbers restart with each connection; the seen ids are kept to drop snapshot repeats."""
        self._last_sequence = None

    def _check_sequence(self, message: dict[str, Any], result: ParseResult) -> None:
        sequence = message.get("sequence_num")
        if isinstance(sequence, bool) or not isinstance(sequence, int):
            return
        last = self._last_sequence
        if last is not None and sequence != last + 1:
            result.events.append(ControlEvent(SEQUENCE_GAP, {"expected": last + 1, "received": sequence}))
        self._last_sequence = sequence

    def _first_time(self, product: str, trade_id: str) -> bool:
        seen = self._seen.setdefault(product, OrderedDict())
        if trade_id in seen:
            self.duplicates += 1
            return False
        seen[trade_id] = None
        if len(seen) > self.seen_per_product:
            seen.popitem(last=False)
        return True

    def parse(self, raw: str | bytes, received_at: int) -> ParseResult:
        """Parse one frame (never raises)."""
        result = ParseResult()
        message = json_object(raw, result)
        if message is None:
            return result
        self._check_sequence(message, result)
        channel = message.get("channel")
        if message.get("type") == "error":
            result.events.append(ControlEvent(ERROR, {"message": message.get("message")}))
        elif channel == "market_trades":
            self._trades(message, raw, received_at, result)
        elif channel == "subscriptions":
            result.events.append(ControlEvent(SUBSCRIPTIONS, {"events": message.get("events")}))
        elif channel == "heartbeats":
            result.events.append(ControlEvent(HEARTBEAT, {}))
        else:
            result.bad.append(BadInput(f"unknown channel {str(channel)[:40]!r}", to_text(raw)))
        return result

    def _trades(self, message: dict[str, Any], raw: str | bytes, received_at: int, result: ParseResult) -> None:
        events = message.get("events")
        if not isinstance(events, list):
            result.bad.append(BadInput("market_trades frame without an events list", to_text(raw)))
            return
        try:
            frame_time: int | None = rfc3339_ms(message["timestamp"])
        except (KeyError, ValueError):
            frame_time = None
        for event in events:
            trades = event.get("trades") if isinstance(event, dict) else None
            if not isinstance(trades, list):
                result.bad.append(BadInput("market_trades event without a trades list", to_text(raw)))
                continue
            for trade in trades:
                self._trade(trade, frame_time, received_at, result)
        # Coinbase lists trades newest first; publish oldest first so each symbol stays in order.
        result.trades.sort(key=_trade_id)

    def _trade(self, trade: Any, frame_time: int | None, received_at: int, result: ParseResult) -> None:
        raw_trade = orjson.dumps(trade).decode()
        if not isinstance(trade, dict):
            result.bad.append(BadInput("trade is not a JSON object", raw_trade))
            return
        try:
            side = trade["side"]
            if side not in ("BUY", "SELL"):
                raise InvalidRecordError(f"side must be BUY or SELL, got {str(side)[:20]!r}")
            trade_id = trade["trade_id"]
            if not isinstance(trade_id, str) or not trade_id.isascii() or not trade_id.isdigit():
                raise InvalidRecordError(f"trade_id must be a numeric string, got {str(trade_id)[:40]!r}")
            try:
                trade_time = rfc3339_ms(trade["time"])
            except ValueError as exc:
                raise InvalidRecordError(str(exc)) from None
            record = make_trade(
                exchange=EXCHANGE,
                symbol=trade["product_id"],
                trade_id=trade_id,
                price=trade["price"],
                quantity=trade["size"],
                is_buyer_maker=side == "SELL",
                trade_time=trade_time,
                event_time=frame_time if frame_time is not None else trade_time,
                received_at=received_at,
            )
        except KeyError as exc:
            result.bad.append(BadInput(f"missing field {exc.args[0]!r}", raw_trade))
            return
        except InvalidRecordError as exc:
            result.bad.append(BadInput(exc.reason, raw_trade))
            return
        if self._first_time(record.symbol, trade_id):
            result.trades.append(record)


def trade_from_rest(product: str, row: Any, received_at: int) -> TradeRecord:
    """A Coinbase Exchange ``/products/{id}/trades`` row as a record.

    There ``side`` is the maker's side ("buy": the maker bought, so the taker sold), the opposite of the
    Advanced Trade feed's taker side; both end up as the same ``is_buyer_maker``. Rows carry no event time: the
    trade time stands in.
    """
    if not isinstance(row, dict):
        raise InvalidRecordError("REST trade row is not a JSON object")
    try:
        side = row["side"]
        if side not in ("buy", "sell"):
            raise InvalidRecordError(f"side must be buy or sell, got {str(side)[:20]!r}")
        try:
            trade_time = rfc3339_ms(row["time"])
        except ValueError as exc:
            raise InvalidRecordError(str(exc)) from None
        return make_trade(
            exchange=EXCHANGE,
            symbol=product,
            trade_id=row["trade_id"],
            price=row["price"],
            quantity=row["size"],
            is_buyer_maker=side == "buy",
            trade_time=trade_time,
            event_time=trade_time,
            received_at=received_at,
        )
    except KeyError as exc:
        raise InvalidRecordError(f"missing field {exc.args[0]!r}") from None


class CoinbaseExchange(Exchange):
    """One connection subscribed to ``market_trades`` and ``heartbeats`` (which keeps quiet products alive); ids
    are consecutive per product, gaps are backfilled over the Coinbase Exchange REST."""

    name = EXCHANGE
    consecutive_ids = True
    supports_backfill = True
    spelling = SymbolSpelling(_PRODUCT, "product id: {symbol!r} (e.g. BTC-USD)", separator="-")

    def plans(self, symbols: list[str]) -> list[ConnectionPlan]:
        """Subscribe after every (re)connect: market_trades for the products, then heartbeats."""
        messages = tuple(
            orjson.dumps({"type": "subscribe", "product_ids": symbols, "channel": channel}).decode()
            for channel in ("market_trades", "heartbeats")
        )
        return [ConnectionPlan(url=self.ws_url, symbols=tuple(symbols), subscribe=messages)]

    def parser(self) -> FrameParser:
        """A parser that de-duplicates snapshot repeats and watches sequence numbers."""
        return CoinbaseParser()
