"""Bybit v5 public WebSocket (spot): ``{"op":"subscribe"|"unsubscribe","args":["publicTrade.<symbol>",..]}`` (at most
10 args) answered by ``{"success":..,"ret_msg":..,"conn_id":..,"req_id":..,"op":..}``, the ``{"op":"ping"}``
keepalive answered with ``ret_msg`` ``pong``, and ``publicTrade`` push frames; and the REST
``GET /v5/market/recent-trade?category=spot&symbol=&limit=`` (the newest trades only, at most 60 on spot, newest
first; ``retCode`` 10006 beyond the public limit of 600 requests per 5 s).

No real Bybit recording is bundled (none is available offline): the trades served are other exchanges' real
recorded trades relabelled into Bybit's documented layout, and the protocol says so in its log when it starts. Their
ids go out as numeric strings, as Bybit's spot ids are, and ``seq`` is made up (increasing, not consecutive).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from ingest.records import TradeRecord
from simulator.base import Protocol, Session, is_upgrade, json_response
from simulator.faults import FrameFields

logger = logging.getLogger(__name__)

REST_PATH = "/v5/market/recent-trade"
#: recent-trade's largest answer on spot
SPOT_LIMIT = 60
ARGS_PER_MESSAGE = 10
TOPIC = "publicTrade."


def seq_of(record: TradeRecord) -> int:
    """The made-up cross sequence of a trade: increasing with its id, with room between (Bybit's advances on
    order-book events too)."""
    return record.trade_id * 3 + 7


def encode_trade(record: TradeRecord) -> bytes:
    """One trade of a ``publicTrade`` frame's ``data``, as Bybit writes it (``S`` is the taker's side)."""
    return (
        b'{"T":%d,"s":"%s","S":"%s","v":"%s","p":"%s","L":"ZeroPlusTick","i":"%d","BT":false,"RPI":false,"seq":%d}'
        % (
            record.trade_time,
            record.symbol.encode(),
            b"Sell" if record.is_buyer_maker else b"Buy",
            record.quantity.encode(),
            record.price.encode(),
            record.trade_id,
            seq_of(record),
        )
    )


def rest_row(record: TradeRecord) -> dict[str, Any]:
    """One row of ``recent-trade``."""
    return {
        "execId": str(record.trade_id),
        "symbol": record.symbol,
        "price": record.price,
        "size": record.quantity,
        "side": "Sell" if record.is_buyer_maker else "Buy",
        "time": str(record.trade_time),
        "isBlockTrade": False,
        "isRPITrade": False,
        "seq": str(seq_of(record)),
    }


def _answer(code: int, msg: str, rows: list[Any] | None, status: int = 200) -> Response:
    result: dict[str, Any] = {} if rows is None else {"category": "spot", "list": rows}
    return json_response(status, {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": 0})


class BybitSession(Session):
    """One ``/v5/public/spot`` connection."""

    fields = FrameFields("p", "v")

    def __init__(self, simulator: Any, connection: Any, number: int) -> None:
        super().__init__(simulator, connection, number)
        self.symbols: dict[str, None] = {}
        self.conn_id = f"sim-{number:08x}"

    def frames(self, chunk: list[tuple[TradeRecord, Any]]) -> list[bytes]:
        """``publicTrade`` frames per symbol, oldest first, at most ``batch_size`` trades each; ``ts`` is the last
        trade's time."""
        by_symbol: dict[str, list[tuple[TradeRecord, Any]]] = {}
        for record, encoded in chunk:
            by_symbol.setdefault(record.symbol, []).append((record, encoded))
        size = self.config.batch_size or len(chunk)
        out = []
        for symbol, items in by_symbol.items():
            for start in range(0, len(items), size):
                part = items[start : start + size]
                out.append(
                    b'{"topic":"publicTrade.%s","ts":%d,"type":"snapshot","data":[%s]}'
                    % (symbol.encode(), part[-1][0].trade_time, b",".join(e for _r, e in part))
                )
        return out

    async def reply(self, op: Any, success: bool, ret_msg: str, req_id: Any = "") -> None:
        """Bybit's answer to a request."""
        await self.send_json(
            {"success": success, "ret_msg": ret_msg, "conn_id": self.conn_id, "req_id": req_id or "", "op": op}
        )

    async def on_message(self, message: str | bytes) -> None:
        """``{"op":"ping"}``, and ``subscribe``/``unsubscribe`` to ``publicTrade``."""
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self.reply(None, False, f"error:request not json:{str(message)[:100]}")
            return
        if not isinstance(request, dict):
            await self.reply(None, False, "error:request not an object")
            return
        op, args, req_id = request.get("op"), request.get("args"), request.get("req_id")
        if op == "ping":
            await self.reply("ping", True, "pong", req_id)
            return
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            await self.reply(op, False, f"error:handler not found,topic:{str(op)[:40]}", req_id)
            return
        if len(args) > ARGS_PER_MESSAGE:
            await self.reply(op, False, f"error:args size >{ARGS_PER_MESSAGE}", req_id)
            return
        known = self.simulator.feed.symbols()
        wanted = []
        for arg in args:
            symbol = arg[len(TOPIC) :] if isinstance(arg, str) and arg.startswith(TOPIC) else None
            if symbol is None or (known and symbol not in known):
                await self.reply(op, False, f"Invalid symbol :[{str(arg)[:40]}]", req_id)
                return
            wanted.append(symbol)
        if op == "unsubscribe":
            for symbol in wanted:
                self.symbols.pop(symbol, None)
            self.subscriber.unsubscribe(wanted)
        else:
            new = [s for s in wanted if s not in self.symbols]
            self.symbols.update(dict.fromkeys(new))
            # The ack and the feed join without yielding: no trade falls in between (Bybit sends no snapshot).
            self.subscriber.subscribe(new)
        await self.reply(op, True, op, req_id)


class BybitProtocol(Protocol):
    """Bybit v5 public market data (WebSocket on any path, ``/v5/public/spot`` in the real URL)."""

    name = "bybit"
    session: ClassVar[type[Session]] = BybitSession
    rest_limit = (120.0, 600.0)  # 600 requests per 5 s per IP

    def __init__(self, simulator: Any) -> None:
        super().__init__(simulator)
        logger.warning(
            "simulator: no real Bybit recording is bundled; the trades served are other exchanges' real trades "
            "relabelled into Bybit's v5 layout (ids as numeric strings, seq made up)",
            extra={"exchange": self.name},
        )

    def http(self, connection: ServerConnection, request: Request) -> Response | None:
        """REST ``recent-trade``; WebSocket upgrades go on."""
        if is_upgrade(request):
            return None
        url = urlsplit(request.path)
        if url.path.rstrip("/") != REST_PATH:
            return _answer(10001, "path not found", None, 404)
        if not self.rest_bucket.allow():
            return _answer(10006, "Too many visits!", None)
        return self.recent(parse_qs(url.query))

    def recent(self, query: dict[str, list[str]]) -> Response:
        """The newest trades of ``symbol``, newest first."""

        def last(name: str) -> str:
            return (query.get(name) or [""])[-1]

        if last("category") != "spot":
            return _answer(10001, "params error: the simulator serves category=spot", None)
        symbol = last("symbol")
        if symbol not in self.simulator.feed.symbols():
            return _answer(10001, "params error: Symbol Invalid", None)
        limit_text = last("limit") or str(SPOT_LIMIT)
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= SPOT_LIMIT:
            return _answer(10001, f"params error: limit must be 1..{SPOT_LIMIT} on spot", None)
        records = self.simulator.store.since(symbol, None, int(limit_text), self.simulator.config.rest_history)
        return _answer(0, "OK", [rest_row(record) for record in reversed(records)])

    # A static function, not a method: the feed calls it once per trade.
    encode = staticmethod(encode_trade)


#: what :func:`simulator.server.protocol_class` finds in this module by the exchange's name
PROTOCOL: type[Protocol] = BybitProtocol
