"""OKX v5 public WebSocket: ``{"op":"subscribe"|"unsubscribe","args":[{"channel":"trades","instId":..}]}`` answered
by one ``{"event":"subscribe",..,"connId":..}`` per arg (``{"event":"error","code":..}`` for a bad request), the
text ``ping``/``pong`` keepalive and ``trades`` push frames; and the REST ``GET /api/v5/market/history-trades``
(``type=1``: paged by trade id with ``after``/``before``, newest first, at most 100 a page, in
``{"code":"0","msg":"","data":[..]}``; HTTP 429 with code ``50011`` beyond the public limit of 20 requests per 2 s).

Like OKX since it aggregates the channel, consecutive fills of one taker order (same instrument, time, side and
price, consecutive ids) go out as one trade: ``tradeId`` the last fill's, ``sz`` their sum, ``count`` how many.
The bundled recording predates the aggregation (one fill a message), so its runs are aggregated here; REST rows
stay single fills, as OKX's are.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from ingest.records import TradeRecord
from simulator.base import Protocol, Session, is_upgrade, json_response
from simulator.faults import FrameFields

REST_PATH = "/api/v5/market/history-trades"
PAGE = 100


def encode_trade(record: TradeRecord) -> bytes:
    """One trade of a ``trades`` frame's ``data``, as OKX writes it (``side`` is the taker's)."""
    return b'{"instId":"%s","tradeId":"%d","px":"%s","sz":"%s","side":"%s","ts":"%d"}' % (
        record.symbol.encode(),
        record.trade_id,
        record.price.encode(),
        record.quantity.encode(),
        b"sell" if record.is_buyer_maker else b"buy",
        record.trade_time,
    )


def encode_aggregate(run: list[TradeRecord]) -> bytes:
    """Fills of one taker order as OKX aggregates them: the last fill's id, the summed size, ``count``."""
    last = run[-1]
    size = format(sum((Decimal(r.quantity) for r in run), Decimal(0)), "f")
    return b'{"instId":"%s","tradeId":"%d","px":"%s","sz":"%s","side":"%s","ts":"%d","count":"%d"}' % (
        last.symbol.encode(),
        last.trade_id,
        last.price.encode(),
        size.encode(),
        b"sell" if last.is_buyer_maker else b"buy",
        last.trade_time,
        len(run),
    )


def _continues(run: list[TradeRecord], record: TradeRecord) -> bool:
    # One taker order's next fill: the next id, at the same time, price and side.
    last = run[-1]
    return (
        record.trade_id == last.trade_id + 1
        and record.trade_time == last.trade_time
        and record.price == last.price
        and record.is_buyer_maker == last.is_buyer_maker
    )


def rest_row(record: TradeRecord) -> dict[str, Any]:
    """One row of ``history-trades``: the WebSocket's fields."""
    return {
        "instId": record.symbol,
        "side": "sell" if record.is_buyer_maker else "buy",
        "sz": record.quantity,
        "px": record.price,
        "tradeId": str(record.trade_id),
        "ts": str(record.trade_time),
    }


def _answer(code: str, msg: str, data: list[Any], status: int = 200) -> Response:
    return json_response(status, {"code": code, "msg": msg, "data": data})


class OkxSession(Session):
    """One ``/ws/v5/public`` connection."""

    fields = FrameFields("px", "sz")

    def __init__(self, simulator: Any, connection: Any, number: int) -> None:
        super().__init__(simulator, connection, number)
        self.instruments: dict[str, None] = {}
        self.conn_id = f"{number:08x}"

    def _frame(self, inst_id: str, trades: list[bytes]) -> bytes:
        return b'{"arg":{"channel":"trades","instId":"%s"},"data":[%s]}' % (inst_id.encode(), b",".join(trades))

    def frames(self, chunk: list[tuple[TradeRecord, Any]]) -> list[bytes]:
        """``trades`` frames per instrument, oldest first, at most ``batch_size`` trades each; a taker order's
        consecutive fills aggregated into one trade, as OKX does."""
        runs: dict[str, list[tuple[list[TradeRecord], bytes]]] = {}
        for record, encoded in chunk:
            trades = runs.setdefault(record.symbol, [])
            if trades and not self.config.single_fills and _continues(trades[-1][0], record):
                trades[-1][0].append(record)
            else:
                trades.append(([record], encoded))
        by_inst = {
            inst_id: [encoded if len(run) == 1 else encode_aggregate(run) for run, encoded in trades]
            for inst_id, trades in runs.items()
        }
        size = self.config.batch_size or len(chunk)
        return [
            self._frame(inst_id, trades[start : start + size])
            for inst_id, trades in by_inst.items()
            for start in range(0, len(trades), size)
        ]

    async def error(self, code: str, msg: str, req_id: Any = None) -> None:
        """OKX's error event."""
        reply: dict[str, Any] = {"event": "error", "code": code, "msg": msg, "connId": self.conn_id}
        if req_id is not None:
            reply = {"id": req_id, **reply}
        await self.send_json(reply)

    async def on_message(self, message: str | bytes) -> None:
        """The text ``ping``, and ``subscribe``/``unsubscribe`` to ``trades``."""
        if message in ("ping", b"ping"):
            await self.send_control([b"pong"])
            return
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self.error("60012", f"Invalid request: {str(message)[:200]}")
            return
        if not isinstance(request, dict):
            await self.error("60012", f"Invalid request: {str(message)[:200]}")
            return
        op, args, req_id = request.get("op"), request.get("args"), request.get("id")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            await self.error("60012", f"Invalid request: {str(message)[:200]}", req_id)
            return
        known = self.simulator.feed.symbols()
        accepted: list[str] = []
        frames: list[bytes] = []
        for arg in args:
            channel = arg.get("channel") if isinstance(arg, dict) else None
            inst_id = arg.get("instId") if isinstance(arg, dict) else None
            if channel != "trades" or not isinstance(inst_id, str):
                await self.error("60018", f"Wrong URL or channel:{channel}, instId:{inst_id} doesn't exist", req_id)
                continue
            if known and inst_id not in known:
                await self.error("60018", f"Wrong URL or channel:{channel}, instId:{inst_id} doesn't exist", req_id)
                continue
            accepted.append(inst_id)
            reply: dict[str, Any] = {"event": op, "arg": {"channel": "trades", "instId": inst_id}}
            if req_id is not None:
                reply = {"id": req_id, **reply}
            reply["connId"] = self.conn_id
            frames.append(orjson.dumps(reply))
        if op == "unsubscribe":
            for inst_id in accepted:
                self.instruments.pop(inst_id, None)
            self.subscriber.unsubscribe(accepted)
        else:
            new = [inst_id for inst_id in accepted if inst_id not in self.instruments]
            self.instruments.update(dict.fromkeys(new))
            # The acks and the feed join without yielding: no trade falls in between (OKX sends no snapshot).
            self.subscriber.subscribe(new)
        if frames:
            await self.send_control(frames)


class OkxProtocol(Protocol):
    """OKX v5 public market data (WebSocket on any path, ``/ws/v5/public`` in the real URL)."""

    name = "okx"
    session: ClassVar[type[Session]] = OkxSession
    rest_limit = (10.0, 20.0)  # history-trades: 20 requests per 2 s per IP

    def http(self, connection: ServerConnection, request: Request) -> Response | None:
        """REST ``history-trades``; WebSocket upgrades go on."""
        if is_upgrade(request):
            return None
        url = urlsplit(request.path)
        if url.path.rstrip("/") != REST_PATH:
            return _answer("50030", "Illegal request path", [], 404)
        if not self.rest_bucket.allow():
            return _answer("50011", "Too Many Requests", [], 429)
        return self.trades(parse_qs(url.query))

    def trades(self, query: dict[str, list[str]]) -> Response:
        """Trades of ``instId`` newest first: below ``after``, or the nearest above ``before``, or the latest."""

        def last(name: str) -> str:
            return (query.get(name) or [""])[-1]

        inst_id = last("instId")
        if not inst_id:
            return _answer("50014", "Parameter instId can not be empty", [], 400)
        if inst_id not in self.simulator.feed.symbols():
            return _answer("51001", "Instrument ID does not exist", [], 200)
        if last("type") not in ("", "1"):
            return _answer("51000", "Parameter type error: the simulator pages by tradeId only (type=1)", [], 400)
        limit_text = last("limit") or str(PAGE)
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= PAGE:
            limit_text = str(PAGE)  # OKX answers the default page for a limit out of range
        cursors: dict[str, int | None] = {}
        for name in ("after", "before"):
            text = last(name)
            if text and not (text.isdigit() and len(text) <= 19):
                return _answer("51000", f"Parameter {name} error", [], 400)
            cursors[name] = int(text) if text else None
        store, history, limit = self.simulator.store, self.simulator.config.rest_history, int(limit_text)
        after, before = cursors["after"], cursors["before"]
        if before is not None and after is None:
            records = store.since(inst_id, before + 1, limit, history)
        else:
            records = store.before(inst_id, after, limit, history)
        return _answer("0", "", [rest_row(record) for record in reversed(records)])

    # A static function, not a method: the feed calls it once per trade.
    encode = staticmethod(encode_trade)


#: what :func:`simulator.server.protocol_class` finds in this module by the exchange's name
PROTOCOL: type[Protocol] = OkxProtocol
