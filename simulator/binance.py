"""Binance spot market streams (raw ``/ws/<stream>`` and combined ``/stream?streams=``; ``@trade``, ``@aggTrade``
and, from a recording's depth events, ``@depth@100ms`` and ``@depth``), the control methods (SUBSCRIBE, UNSUBSCRIBE,
LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY), its limits, and the REST ``/api/v3/historicalTrades`` (gap
backfill), ``/api/v3/depth`` (book snapshots, :mod:`simulator.depth`) and ``/api/v3/exchangeInfo`` (what
third-party clients such as cryptofeed read before subscribing)."""

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
from simulator.base import Protocol, Session, json_response
from simulator.depth import TRADES_WEIGHT, DepthEvent, depth_weight
from simulator.faults import FrameFields
from simulator.feed import split_symbol

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


def encode_agg_trade(record: TradeRecord, scale: int = 1) -> bytes:
    """The ``@aggTrade`` event exactly as Binance lays it out. Each recorded trade is its own aggregate (first and
    last trade id equal): the recordings hold single trades, and an aggregate of one is what Binance sends for a
    trade no other fill at the same price and time joins."""
    return (
        '{"e":"aggTrade","E":%d,"s":"%s","a":%d,"p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%s,"M":true}'  # noqa: UP031
        % (
            record.event_time * scale,
            record.symbol,
            record.trade_id,
            record.price,
            record.quantity,
            record.trade_id,
            record.trade_id,
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


def _too_many_requests() -> Response:
    """Binance's answer past its REST limit."""
    return json_response(
        429,
        {"code": -1003, "msg": "Too many requests; please use the websocket for live updates."},
        [("Retry-After", "1")],
    )


def _int_param(query: dict[str, list[str]], name: str) -> int | Response | None:
    values = query.get(name)
    if not values or values[-1] == "":
        return None
    text = values[-1]
    if not text.isdigit() or len(text) > 20:
        return _error(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(text)


TRADE_STREAMS = ("trade", "aggTrade")
#: both carry the recorded 100 ms events here (Binance's ``@depth`` sends the same diffs once a second)
DEPTH_STREAMS = ("depth@100ms", "depth")


def stream_symbol(stream: str) -> str | None:
    """``btcusdt@trade`` / ``btcusdt@aggTrade`` -> ``BTCUSDT``; None for other streams (accepted, carry nothing)."""
    symbol, _, kind = stream.partition("@")
    return symbol.upper() if kind in TRADE_STREAMS else None


def _decimals(values: list[str]) -> int:
    # The most fractional digits a value uses once trailing zeros are dropped (Binance pads to 8).
    most = 0
    for value in values:
        _, _, fraction = value.partition(".")
        most = max(most, len(fraction.rstrip("0")))
    return most


def _step(decimals: int) -> str:
    return format(Decimal(1).scaleb(-decimals), ".8f")


def symbol_info(symbol: str, trades: list[TradeRecord]) -> dict[str, Any]:
    """One ``symbols`` item of ``/api/v3/exchangeInfo`` in Binance's layout; tick and lot sizes are the finest the
    recorded prices and quantities use (so every replayed trade passes the filters a client checks)."""
    base, quote = split_symbol(symbol)
    tick = _step(_decimals([t.price for t in trades]) if trades else 2)
    lot = _step(_decimals([t.quantity for t in trades]) if trades else 5)
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": [
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        # PRICE_FILTER first: clients (cryptofeed) read the tick size from filters[0].
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": lot, "maxQty": "9000.00000000", "stepSize": lot},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": "100.00000000",
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


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
        # symbol -> {stream kind: combined-envelope prefix}; one trade goes out once per subscribed kind.
        self._kinds: dict[str, dict[str, bytes]] = {}
        self._agg = False  # any @aggTrade stream: off the @trade-only fast path
        # symbol -> combined-envelope prefix of its depth stream (any: off the trade-only fast path)
        self._depth: dict[str, bytes] = {}
        self._recent: deque[float] = deque()
        self.add_streams([name for name in names if name])

    def add_streams(self, names: list[str]) -> None:
        """Subscribe to ``names`` (lower-case symbol, stream kind as Binance spells it)."""
        symbols = []
        for name in names:
            self.streams[name] = None
            head, _, kind = name.partition("@")
            if kind in DEPTH_STREAMS:
                self._depth[head.upper()] = b'{"stream":"' + name.encode() + b'","data":'
                self.subscriber.depth = True
                symbols.append(head.upper())
                continue
            symbol = stream_symbol(name)
            if symbol:
                symbols.append(symbol)
                kind = name.partition("@")[2]
                self._kinds.setdefault(symbol, {})[kind] = b'{"stream":"' + name.encode() + b'","data":'
        self._agg = any("aggTrade" in kinds for kinds in self._kinds.values())
        self.subscriber.subscribe(symbols)

    def remove_streams(self, names: list[str]) -> None:
        """Unsubscribe from ``names``; a symbol leaves the feed when none of its streams is left."""
        symbols = []
        for name in names:
            head, _, kind = name.partition("@")
            if kind in DEPTH_STREAMS and self.streams.pop(name, False) is None:
                self._depth.pop(head.upper(), None)
                self.subscriber.depth = bool(self._depth)
                if head.upper() not in self._kinds:
                    symbols.append(head.upper())
                continue
            if self.streams.pop(name, False) is None:
                symbol = stream_symbol(name)
                kinds = self._kinds.get(symbol or "")
                if symbol and kinds is not None:
                    kinds.pop(name.partition("@")[2], None)
                    if not kinds:
                        del self._kinds[symbol]
                        if symbol not in self._depth:
                            symbols.append(symbol)
        self._agg = any("aggTrade" in kinds for kinds in self._kinds.values())
        self.subscriber.unsubscribe(symbols)

    def frames(self, chunk: list[tuple[TradeRecord, Any]]) -> list[bytes]:
        """Bare events (``/ws``) or ``{"stream":..,"data":..}`` envelopes (``/stream`` or ``combined``)."""
        if self._depth:
            return self._with_depth(chunk)
        if self._agg:
            return self._all_kinds(chunk)
        if self.scale == 1:
            events = [encoded for _, encoded in chunk]
        else:
            events = [encode_trade(record, self.scale) for record, _ in chunk]
        if not self.combined:
            return events
        kinds = self._kinds
        return [kinds[record.symbol]["trade"] + event + b"}" for (record, _), event in zip(chunk, events, strict=True)]

    def _with_depth(self, chunk: list[tuple[Any, Any]]) -> list[bytes]:
        # Depth events of the symbols with a depth stream, and trades of those with a trade stream, in feed order.
        out: list[bytes] = []
        depth, kinds, combined = self._depth, self._kinds, self.combined
        for item in chunk:
            record = item[0]
            if record.__class__ is DepthEvent:
                prefix = depth.get(record.symbol)
                if prefix is not None:
                    out.append(prefix + record.data + b"}" if combined else record.data)
            elif record.symbol in kinds:
                out.extend(self._all_kinds([item]))
        return out

    def _all_kinds(self, chunk: list[tuple[TradeRecord, Any]]) -> list[bytes]:
        # A trade goes out once per stream of its symbol (@trade and/or @aggTrade), in subscription order.
        out: list[bytes] = []
        scale, combined = self.scale, self.combined
        for record, encoded in chunk:
            for kind, prefix in self._kinds[record.symbol].items():
                if kind == "trade":
                    event = encoded if scale == 1 else encode_trade(record, scale)
                else:
                    event = encode_agg_trade(record, scale)
                out.append(prefix + event + b"}" if combined else event)
        return out

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
            if not self.rest_bucket.allow():  # only with --rest-rate: Binance's limit is by request weight
                return _too_many_requests()
            return self.trades(query, historical=path.endswith("historicalTrades"))
        if path == "/api/v3/depth":
            return self.depth(query)
        if path == "/api/v3/exchangeInfo":
            return self.exchange_info(query)
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
        records = self.simulator.store.since(symbol, from_id, limit, self.simulator.config.rest_history)
        return json_response(200, [historical_trade(record) for record in records])

    def depth(self, query: dict[str, list[str]]) -> Response:
        """``/api/v3/depth?symbol=&limit=`` (default 100, at most 5000): the book the depth events sent so far make
        (:meth:`simulator.depth.DepthTape.snapshot`). With ``--rest-rate`` it costs its Binance weight over
        ``historicalTrades``' 25 of the REST bucket (limit 1000: weight 50, two requests' worth)."""
        symbol = (query.get("symbol") or [""])[-1].upper()
        if not symbol:
            return _error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        limit = _int_param(query, "limit")
        if isinstance(limit, Response):
            return limit
        if limit is None:
            limit = 100
        if not 1 <= limit <= 5000:
            return _error(-1130, "Data sent for parameter 'limit' is not valid.")
        tape = self.simulator.depth
        snapshot = tape.snapshot(symbol, limit) if tape is not None else None
        if snapshot is None:
            return _error(-1121, "Invalid symbol.")
        if not self.rest_bucket.allow(depth_weight(limit) / TRADES_WEIGHT):
            return _too_many_requests()
        return json_response(200, snapshot)

    def exchange_info(self, query: dict[str, list[str]]) -> Response:
        """``/api/v3/exchangeInfo`` for the symbols this market replays (``symbol=`` or ``symbols=[..]`` filter)."""
        known = sorted(self.simulator.feed.symbols())
        wanted = known
        if query.get("symbol"):
            wanted = [query["symbol"][-1].upper()]
        elif query.get("symbols"):
            try:
                names = orjson.loads(query["symbols"][-1])
            except orjson.JSONDecodeError:
                names = None
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                return _error(-1100, "Illegal characters found in parameter 'symbols'.")
            wanted = [name.upper() for name in names]
        unknown = [name for name in wanted if name not in known]
        if unknown:
            return _error(-1121, "Invalid symbol.")
        store = self.simulator.store
        return json_response(
            200,
            {
                "timezone": "UTC",
                "serverTime": int(time.time() * 1000),
                "rateLimits": RATE_LIMITS,
                "exchangeFilters": [],
                "symbols": [symbol_info(name, store.latest(name, 1000)) for name in wanted],
            },
        )


#: what :func:`simulator.server.protocol_class` finds in this module by the exchange's name
PROTOCOL: type[Protocol] = BinanceProtocol
