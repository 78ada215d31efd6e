"""Binance spot market streams (raw ``/ws/<stream>`` and combined ``/stream?streams=``), the control methods
(SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY), its limits, and the REST
``/api/v3/historicalTrades`` used for gap backfill."""

from __future__ import annotations

import re
import time
from collections import deque
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from ingest.records import TradeRecord
from ingest.simulator.base import Protocol, Session, json_response
from ingest.simulator.faults import FrameFields

MAX_STREAMS = 1024
_STREAM = re.compile(r"^[a-z0-9]+@[A-Za-z0-9_@]+$")
_EIGHT_DECIMALS = Decimal("0.00000001")
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")


def encode_trade(record: TradeRecord, scale: int = 1) -> bytes:
    """The ``@trade`` event exactly as Binance sends it (``scale=1000`` for ``timeUnit=MICROSECOND``)."""
    return (
        '{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"%s","T":%d,"m":%s,"M":true}'  # noqa: UP031 - fastest
        % (
            record.event_time * scale,
            record.symbol,
            record.trade_id,
            record.price,
            record.quantity,
            record.trade_time * scale,
            "true" if record.is_buyer_maker else "false",
        )
    ).encode()


def historical_trade(record: TradeRecord) -> dict[str, Any]:
    """One item of ``/api/v3/historicalTrades``."""
    quote = (Decimal(record.price) * Decimal(record.quantity)).quantize(_EIGHT_DECIMALS)
    return {
        "id": record.trade_id,
        "price": record.price,
        "qty": record.quantity,
        "quoteQty": format(quote, "f"),
        "time": record.trade_time,
        "isBuyerMaker": record.is_buyer_maker,
        "isBestMatch": True,
    }


def _error(code: int, msg: str) -> Response:
    return json_response(400, {"code": code, "msg": msg})


def _int_param(query: dict[str, list[str]], name: str) -> int | Response | None:
    values = query.get(name)
    if not values or values[-1] == "":
        return None
    text = values[-1]
    if not text.isdigit() or len(text) > 20:
        return _error(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(text)


def stream_symbol(stream: str) -> str | None:
    """``btcusdt@trade`` -> ``BTCUSDT``; None for other streams (they are accepted but carry nothing here)."""
    symbol, _, kind = stream.partition("@")
    return symbol.upper() if kind == "trade" else None


class BinanceSession(Session):
    """One Binance market-stream connection."""

    fields = FrameFields("p", "q")

    def __init__(self, simulator: Any, connection: ServerConnection, number: int) -> None:
        super().__init__(simulator, connection, number)
        request = connection.request
        assert request is not None  # the handshake is done before a session starts
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        self.combined = url.path.rstrip("/") == "/stream"
        self.scale = 1000 if query.get("timeUnit", [""])[-1].upper() == "MICROSECOND" else 1
        raw_names = url.path[len("/ws") :]
        names = (query.get("streams", [""])[-1] if self.combined else raw_names).split("/")
        self.streams: dict[str, None] = {}  # ordered set, for LIST_SUBSCRIPTIONS
        self._prefix: dict[str, bytes] = {}
        self._recent: deque[float] = deque()
        self.add_streams([name for name in names if name])

    def add_streams(self, names: list[str]) -> None:
        """Subscribe to ``names`` (lower-case stream names)."""
        symbols = []
        for name in names:
            self.streams[name] = None
            symbol = stream_symbol(name)
            if symbol:
                symbols.append(symbol)
                self._prefix[symbol] = b'{"stream":"' + name.encode() + b'","data":'
        self.subscriber.subscribe(symbols)

    def remove_streams(self, names: list[str]) -> None:
        """Unsubscribe from ``names``."""
        symbols = []
        for name in names:
            if self.streams.pop(name, False) is None:
                symbol = stream_symbol(name)
                if symbol:
                    symbols.append(symbol)
        self.subscriber.unsubscribe(symbols)

    def frames(self, chunk: list[tuple[TradeRecord, Any]]) -> list[bytes]:
        """Bare events (``/ws``) or ``{"stream":..,"data":..}`` envelopes (``/stream`` or ``combined``)."""
        if self.scale == 1:
            events = [encoded for _, encoded in chunk]
        else:
            events = [encode_trade(record, self.scale) for record, _ in chunk]
        if not self.combined:
            return events
        prefix = self._prefix
        return [prefix[record.symbol] + event + b"}" for (record, _), event in zip(chunk, events, strict=True)]

    async def reply_error(self, code: int, msg: str, request_id: Any = None) -> None:
        """Binance's error reply."""
        await self.send_json({"error": {"code": code, "msg": msg}, "id": request_id})

    def _too_many(self) -> bool:
        limit = self.config.max_incoming_per_s
        if not limit:
            return False
        now = time.monotonic()
        recent = self._recent
        recent.append(now)
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        return len(recent) > limit

    async def on_message(self, message: str | bytes) -> None:
        """The control methods, with Binance's replies and error codes."""
        if self._too_many():
            # Binance disconnects a connection that sends more than 5 messages a second.
            await self.connection.close(1008, "Too many requests")
            return
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            await self.reply_error(3, f"Invalid JSON: {exc}")
            return
        if not isinstance(request, dict):
            await self.reply_error(2, "Invalid request: expected an object")
            return
        request_id = request.get("id")
        if not (
            request_id is None
            or (isinstance(request_id, int) and not isinstance(request_id, bool) and 0 <= request_id < 2**63)
            or (isinstance(request_id, str) and len(request_id) <= 36)
        ):
            await self.reply_error(2, "Invalid request: request ID must be an unsigned integer or a string")
            return
        method = request.get("method")
        if method not in METHODS:
            variants = ", ".join(METHODS)
            await self.reply_error(
                2, f"Invalid request: unknown variant {method!r}, expected one of {variants}", request_id
            )
            return
        params = request.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) and _STREAM.match(p) for p in params):
                await self.reply_error(2, "Invalid request: params must be lower-case stream names", request_id)
                return
            if method == "SUBSCRIBE":
                if len(set(self.streams) | set(params)) > MAX_STREAMS:
                    await self.reply_error(2, f"Invalid request: too many streams (max {MAX_STREAMS})", request_id)
                    return
                self.add_streams(params)
            else:
                self.remove_streams(params)
            await self.send_json({"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            await self.send_json({"result": list(self.streams), "id": request_id})
        elif method == "SET_PROPERTY":
            if not (isinstance(params, list) and len(params) == 2 and params[0] == "combined"):
                await self.reply_error(0, "Unknown property", request_id)
            elif not isinstance(params[1], bool):
                await self.reply_error(1, "Invalid value type: expected Boolean", request_id)
            else:
                self.combined = params[1]
                await self.send_json({"result": None, "id": request_id})
        elif isinstance(params, list) and params == ["combined"]:  # GET_PROPERTY
            await self.send_json({"result": self.combined, "id": request_id})
        else:
            await self.reply_error(0, "Unknown property", request_id)


class BinanceProtocol(Protocol):
    """Binance: market streams on ``/ws`` and ``/stream``, REST trades on ``/api/v3/``."""

    name = "binance"
    session: ClassVar[type[Session]] = BinanceSession

    # A static function, not a method: the feed calls it once per trade.
    encode = staticmethod(encode_trade)

    def http(self, connection: ServerConnection, request: Request) -> Response | None:
        """REST answers; 404 for unknown paths; None for the WebSocket paths."""
        url = urlsplit(request.path)
        path = url.path.rstrip("/")
        if path == "/stream" or path == "/ws" or path.startswith("/ws/"):
            return None
        query = parse_qs(url.query, keep_blank_values=True)
        if path == "/api/v3/ping":
            return json_response(200, {})
        if path == "/api/v3/time":
            return json_response(200, {"serverTime": int(time.time() * 1000)})
        if path in ("/api/v3/historicalTrades", "/api/v3/trades"):
            return self.trades(query, historical=path.endswith("historicalTrades"))
        return json_response(404, {"code": -1, "msg": f"Unknown path {url.path}"})

    def trades(self, query: dict[str, list[str]], *, historical: bool) -> Response:
        """``historicalTrades`` (``fromId`` optional) and ``trades`` (latest), from what the feed produced."""
        symbol = (query.get("symbol") or [""])[-1].upper()
        if not symbol:
            return _error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if symbol not in self.simulator.feed.symbols():
            return _error(-1121, "Invalid symbol.")
        limit = _int_param(query, "limit")
        if isinstance(limit, Response):
            return limit
        if limit is None:
            limit = 500
        if not 1 <= limit <= 1000:
            return _error(-1130, "Data sent for parameter 'limit' is not valid.")
        from_id = _int_param(query, "fromId") if historical else None
        if isinstance(from_id, Response):
            return from_id
        records = self.simulator.store.since(symbol, from_id, limit)
        return json_response(200, [historical_trade(record) for record in records])
