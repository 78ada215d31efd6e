"""Kraken WebSocket v2: ``status`` on connect, ``subscribe``/``unsubscribe`` acknowledgements, ``ping``/``pong``,
``heartbeat`` frames, and ``trade`` snapshot/update frames whose prices and quantities are JSON numbers written
from the exact decimal strings (no float round trip)."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import orjson

from ingest.records import TradeRecord
from ingest.simulator.base import Protocol, Session, now_ms, rfc3339
from ingest.simulator.faults import FrameFields

_JSON_NUMBER = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$")


def json_number(text: str) -> str:
    """``text`` as a JSON number literal with the same exact value (``"0.10"`` stays ``0.10``)."""
    if _JSON_NUMBER.match(text):
        return text
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    return format(value, "f")


def encode_trade(record: TradeRecord) -> bytes:
    """One trade of a ``trade`` frame's ``data``, as Kraken writes it (``side`` is the taker's)."""
    # Kraken does not say which order type took; a fixed rule keeps replays deterministic.
    ord_type = b"limit" if record.trade_id % 5 == 0 else b"market"
    return b'{"symbol":"%s","side":"%s","price":%s,"qty":%s,"ord_type":"%s","trade_id":%d,"timestamp":"%s"}' % (
        record.symbol.encode(),
        b"sell" if record.is_buyer_maker else b"buy",
        json_number(record.price).encode(),
        json_number(record.quantity).encode(),
        ord_type,
        record.trade_id,
        rfc3339(record.trade_time).encode(),
    )


def _stamp() -> str:
    return rfc3339(now_ms())


class KrakenSession(Session):
    """One Kraken v2 connection."""

    fields = FrameFields("price", "qty", quoted=False)

    def __init__(self, simulator: Any, connection: Any, number: int) -> None:
        super().__init__(simulator, connection, number)
        self.pairs: dict[str, None] = {}
        self.heartbeat_started = False

    def _trade_frame(self, kind: bytes, trades: list[bytes]) -> bytes:
        return b'{"channel":"trade","type":"%s","data":[%s]}' % (kind, b",".join(trades))

    def frames(self, chunk: list[tuple[TradeRecord, Any]]) -> list[bytes]:
        """``update`` frames per pair, oldest first, at most ``batch_size`` trades each."""
        by_pair: dict[str, list[bytes]] = {}
        for record, encoded in chunk:
            by_pair.setdefault(record.symbol, []).append(encoded)
        size = self.config.batch_size or len(chunk)
        return [
            self._trade_frame(b"update", trades[start : start + size])
            for trades in by_pair.values()
            for start in range(0, len(trades), size)
        ]

    async def on_open(self) -> None:
        """Kraken greets every connection with a ``status`` frame."""
        status = {
            "channel": "status",
            "type": "update",
            "data": [
                {"version": "2.0.10", "system": "online", "api_version": "v2", "connection_id": 10_000 + self.number}
            ],
        }
        await self.send_json(status)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            await self.send_control([b'{"channel":"heartbeat"}'])

    async def error(self, method: Any, message: str, req_id: Any = None, **extra: Any) -> None:
        """Kraken's error reply."""
        reply = {"error": message, "method": method, "success": False, **extra, "time_in": _stamp()}
        reply["time_out"] = _stamp()
        if req_id is not None:
            reply["req_id"] = req_id
        await self.send_json(reply)

    async def on_message(self, message: str | bytes) -> None:
        """``ping``, ``subscribe`` and ``unsubscribe`` on the ``trade`` channel."""
        time_in = _stamp()
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self.error(None, "Malformed request")
            return
        if not isinstance(request, dict):
            await self.error(None, "Malformed request")
            return
        method, req_id = request.get("method"), request.get("req_id")
        if method == "ping":
            pong: dict[str, Any] = {"method": "pong", "time_in": time_in, "time_out": _stamp()}
            if req_id is not None:
                pong["req_id"] = req_id
            await self.send_json(pong)
            return
        if method not in ("subscribe", "unsubscribe"):
            await self.error(method, f"Method not found: {method!r}", req_id)
            return
        params = request.get("params")
        if not isinstance(params, dict) or params.get("channel") != "trade":
            channel = params.get("channel") if isinstance(params, dict) else None
            await self.error(method, f"Channel {channel!r} not supported", req_id)
            return
        pairs = params.get("symbol")
        if not isinstance(pairs, list) or not pairs or not all(isinstance(p, str) for p in pairs):
            await self.error(method, "symbol must be a non-empty list of pairs", req_id)
            return
        known = self.simulator.feed.symbols()
        frames: list[bytes] = []
        accepted: list[str] = []
        for pair in pairs:
            if "/" not in pair or (known and pair not in known):
                await self.error(method, f"Currency pair not supported {pair}", req_id, symbol=pair)
                continue
            accepted.append(pair)
            result = {"channel": "trade", "symbol": pair}
            if method == "subscribe":
                result["snapshot"] = params.get("snapshot", True)
            ack: dict[str, Any] = {
                "method": method,
                "result": result,
                "success": True,
                "time_in": time_in,
                "time_out": _stamp(),
            }
            if req_id is not None:
                ack["req_id"] = req_id
            frames.append(orjson.dumps(ack))
        if method == "unsubscribe":
            for pair in accepted:
                self.pairs.pop(pair, None)
            self.subscriber.unsubscribe(accepted)
            if frames:
                await self.send_control(frames)
            return
        new = [pair for pair in accepted if pair not in self.pairs]
        if params.get("snapshot", True):
            for pair in new:
                recent = self.simulator.store.latest(pair, self.config.snapshot_size)
                frames.append(self._trade_frame(b"snapshot", [self.simulator.protocol.encode(r) for r in recent]))
        for pair in new:
            self.pairs[pair] = None
        # Snapshot taken, feed joined and frames written without yielding: no trade falls in between.
        self.subscriber.subscribe(new)
        if frames:
            await self.send_control(frames)
        if self.pairs and not self.heartbeat_started:
            self.heartbeat_started = True
            self.spawn(self._heartbeat())


class KrakenProtocol(Protocol):
    """Kraken WebSocket v2 (any path, ``/v2`` in the real URL)."""

    name = "kraken"
    session: ClassVar[type[Session]] = KrakenSession

    # A static function, not a method: the feed calls it once per trade.
    encode = staticmethod(encode_trade)
