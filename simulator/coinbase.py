"""Coinbase Advanced Trade WebSocket: the ``market_trades`` channel (snapshot, then updates batched about every
250 ms, ``sequence_num`` per connection), the ``level2`` channel (``l2_data``: a snapshot per product on each
subscribe, consistent with the updates sent, then the recorded updates; :func:`simulator.depth.read_coinbase_l2`),
the ``heartbeats`` channel and the ``subscriptions`` replies; and the
Coinbase Exchange REST ``GET /products/{product_id}/trades`` (paged by trade id with ``after``/``before``, newest
first, ``CB-BEFORE``/``CB-AFTER`` headers, HTTP 429 beyond the public limit of about 10 requests a second)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from ingest.records import TradeRecord
from simulator.base import Protocol, Session, is_upgrade, json_response, now_ms, rfc3339
from simulator.depth import CROSS, CROSSING_PRICE, DROP, SWAP, DepthEvent
from simulator.faults import FrameFields

CHANNELS = ("market_trades", "heartbeats", "level2")


def encode_trade(record: TradeRecord) -> bytes:
    """One trade of a ``market_trades`` event, as Coinbase writes it (``side`` is the taker's)."""
    return b'{"product_id":"%s","trade_id":"%d","price":"%s","size":"%s","time":"%s","side":"%s"}' % (
        record.symbol.encode(),
        record.trade_id,
        record.price.encode(),
        record.quantity.encode(),
        rfc3339(record.trade_time).encode(),
        b"SELL" if record.is_buyer_maker else b"BUY",
    )


def rest_trade(record: TradeRecord) -> dict[str, Any]:
    """One row of ``/products/{id}/trades``; there ``side`` is the maker's ("buy": the maker bought)."""
    return {
        "time": rfc3339(record.trade_time),
        "trade_id": record.trade_id,
        "price": record.price,
        "size": record.quantity,
        "side": "buy" if record.is_buyer_maker else "sell",
    }


def _cursor(query: dict[str, list[str]], name: str) -> int | str | None:
    # The cursor's value, None when absent, or the error message for a bad one.
    values = query.get(name)
    if not values or values[-1] == "":
        return None
    text = values[-1]
    return int(text) if text.isdigit() and len(text) <= 19 else f"invalid {name}"


class CoinbaseSession(Session):
    """One Advanced Trade connection."""

    fields = FrameFields("price", "size")
    batches = True

    def __init__(self, simulator: Any, connection: Any, number: int) -> None:
        super().__init__(simulator, connection, number)
        self.sequence = 0
        self.products: dict[str, None] = {}
        #: level2 products -> the last update id their snapshot holds (later updates go out)
        self.l2: dict[str, int] = {}
        self._held: bytes | None = None  # an l2 frame sent after the next one (--depth-swap-every)
        self.heartbeats = False

    def _frame(self, channel: str, events: bytes) -> bytes:
        # sequence_num counts every frame of the connection, so a jump means the client missed frames.
        sequence = self.sequence
        self.sequence += 1
        stamp = rfc3339(now_ms(), nanos=True).encode()
        return b'{"channel":"%s","client_id":"","timestamp":"%s","sequence_num":%d,"events":%s}' % (
            channel.encode(),
            stamp,
            sequence,
            events,
        )

    def _trades_frame(self, kind: bytes, trades: list[bytes]) -> bytes:
        return self._frame("market_trades", b'[{"type":"%s","trades":[%s]}]' % (kind, b",".join(trades)))

    def frames(self, chunk: list[tuple[TradeRecord, Any]]) -> list[bytes]:
        """``update`` frames of at most ``batch_size`` trades, newest first like Coinbase."""
        if self.l2:
            return self._with_l2(chunk)
        return self._trade_frames(chunk)

    def _with_l2(self, chunk: list[tuple[Any, Any]]) -> list[bytes]:
        # l2 updates of the level2 products and trades of the market_trades ones, in feed order.
        out: list[bytes] = []
        trades: list[tuple[TradeRecord, Any]] = []
        for item in chunk:
            record = item[0]
            if record.__class__ is DepthEvent:
                since = self.l2.get(record.symbol)
                if since is None or record.last_id <= since:
                    continue  # not subscribed, or already in the snapshot this connection got
                if trades:
                    out.extend(self._trade_frames(trades))
                    trades = []
                out.extend(self._l2_update(record))
            elif record.symbol in self.products:
                trades.append(item)
        if trades:
            out.extend(self._trade_frames(trades))
        return out

    def _trade_frames(self, chunk: list[tuple[TradeRecord, Any]]) -> list[bytes]:
        size = self.config.batch_size or len(chunk)
        out = []
        for start in range(0, len(chunk), size):
            trades = [encoded for _, encoded in chunk[start : start + size]]
            trades.reverse()
            out.append(self._trades_frame(b"update", trades))
        return out

    def _l2_update(self, event: DepthEvent) -> list[bytes]:
        """The frames one recorded update makes, its fault applied: a dropped one still takes its ``sequence_num``
        (the client sees the hole), a swapped one goes out after the next, a crossing one carries one more bid."""
        if event.fault == DROP:
            self.sequence += 1
            return []
        data = event.data
        if event.fault == CROSS:
            payload = orjson.loads(data)
            stamp = payload["updates"][-1]["event_time"] if payload["updates"] else rfc3339(now_ms(), nanos=True)
            payload["updates"].append(
                {"side": "bid", "event_time": stamp, "price_level": CROSSING_PRICE, "new_quantity": "1"}
            )
            data = orjson.dumps(payload)
        frame = self._frame("l2_data", b"[" + data + b"]")
        if event.fault == SWAP and self._held is None:
            self._held = frame
            return []
        if self._held is not None:
            held, self._held = self._held, None
            return [frame, held]
        return [frame]

    def _l2_snapshot(self, product: str) -> bytes:
        """A ``snapshot`` event of the product's whole book as the market has sent it so far (the recorded snapshot
        plus every update advanced over, dropped ones included: the exchange's book holds them)."""
        tape = self.simulator.depth
        found = tape.book(product) if tape is not None else None
        if found is None:
            self.l2[product] = 0
            book_rows: dict[str, list[list[str]]] = {"bids": [], "asks": []}
        else:
            book, last_id = found
            self.l2[product] = last_id or 0
            book_rows = book.as_lists(max(len(book.bids), len(book.asks)))
        stamp = rfc3339(now_ms(), nanos=True)
        updates = [
            {"side": side, "event_time": stamp, "price_level": price, "new_quantity": qty}
            for side, rows in (("bid", book_rows["bids"]), ("offer", book_rows["asks"]))
            for price, qty in rows
        ]
        return self._frame("l2_data", orjson.dumps([{"type": "snapshot", "product_id": product, "updates": updates}]))

    async def error(self, message: str) -> None:
        """Coinbase's error reply."""
        await self.send_json({"type": "error", "message": message})

    def _subscriptions(self) -> bytes:
        subscriptions: dict[str, list[str]] = {}
        if self.products:
            subscriptions["market_trades"] = list(self.products)
        if self.l2:
            subscriptions["level2"] = list(self.l2)
        if self.heartbeats:
            subscriptions["heartbeats"] = ["heartbeats"]
        return self._frame("subscriptions", orjson.dumps([{"subscriptions": subscriptions}]))

    async def _heartbeat(self) -> None:
        counter = 0
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            counter += 1
            event = {"current_time": rfc3339(now_ms(), nanos=True), "heartbeat_counter": counter}
            await self.send_control([self._frame("heartbeats", orjson.dumps([event]))])

    async def on_message(self, message: str | bytes) -> None:
        """``subscribe`` / ``unsubscribe`` to ``market_trades`` (with product ids) or ``heartbeats``."""
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self.error("malformed JSON")
            return
        if not isinstance(request, dict) or request.get("type") not in ("subscribe", "unsubscribe"):
            await self.error("failure to subscribe: type must be subscribe or unsubscribe")
            return
        channel = request.get("channel")
        if channel not in CHANNELS:
            await self.error(f"failure to subscribe: unknown channel {channel!r}")
            return
        subscribe = request["type"] == "subscribe"
        if channel == "heartbeats":
            if subscribe and not self.heartbeats:
                self.spawn(self._heartbeat())
            self.heartbeats = self.heartbeats or subscribe
            await self.send_control([self._subscriptions()])
            return
        products = request.get("product_ids")
        if not isinstance(products, list) or not products or not all(isinstance(p, str) for p in products):
            await self.error("failure to subscribe: product_ids must be a non-empty list of strings")
            return
        products = [p.upper() for p in products]
        known = self.simulator.feed.symbols()
        unknown = [p for p in products if known and p not in known]
        if subscribe and unknown:
            await self.error(f"failure to subscribe: unknown product ids {', '.join(unknown)}")
            return
        if channel == "level2":
            await self._level2(products, subscribe)
            return
        if not subscribe:
            for product in products:
                self.products.pop(product, None)
            self.subscriber.unsubscribe([p for p in products if p not in self.l2])
            await self.send_control([self._subscriptions()])
            return
        new = [p for p in products if p not in self.products]
        frames = []
        for product in new:
            self.products[product] = None
            recent = self.simulator.store.latest(product, self.config.snapshot_size)
            trades = [self.simulator.protocol.encode(record) for record in reversed(recent)]
            frames.append(self._trades_frame(b"snapshot", trades))
        # Like Coinbase: a snapshot of recent trades per product, then the subscriptions reply. The snapshots
        # are taken, the feed joined and the frames written without yielding: no trade falls in between.
        self.subscriber.subscribe(new)
        frames.append(self._subscriptions())
        await self.send_control(frames)

    async def _level2(self, products: list[str], subscribe: bool) -> None:
        """``level2``: each subscribe sends each product a fresh snapshot (a resubscription is how a client
        resyncs), then the updates after it; unsubscribe stops them."""
        if not subscribe:
            for product in products:
                self.l2.pop(product, None)
            self.subscriber.unsubscribe([p for p in products if p not in self.products])
            self.subscriber.depth = bool(self.l2)
            await self.send_control([self._subscriptions()])
            return
        # The snapshots are taken, the feed joined and the frames written without yielding: every update after a
        # snapshot's last id goes out, none before it.
        frames = [self._l2_snapshot(product) for product in products]
        self.subscriber.depth = True
        self.subscriber.subscribe(products)
        frames.append(self._subscriptions())
        await self.send_control(frames)


class CoinbaseProtocol(Protocol):
    """Coinbase Advanced Trade market data (any path)."""

    name = "coinbase"
    session: ClassVar[type[Session]] = CoinbaseSession
    rest_limit = (10.0, 10.0)  # public endpoints: about 10 requests a second per IP

    def http(self, connection: ServerConnection, request: Request) -> Response | None:
        """The Exchange REST ``/products/{id}/trades``; WebSocket upgrades on any path go on."""
        if is_upgrade(request):
            return None
        url = urlsplit(request.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "products" or parts[2] != "trades":
            return json_response(404, {"message": "route not found"})
        if not self.rest_bucket.allow():
            return json_response(429, {"message": "Public rate limit exceeded"})
        return self.trades(parts[1].upper(), parse_qs(url.query))

    def trades(self, product: str, query: dict[str, list[str]]) -> Response:
        """Trades of ``product`` newest first: below ``after``, or the nearest above ``before``, or the latest."""
        if product not in self.simulator.feed.symbols():
            return json_response(404, {"message": "NotFound"})
        limit_text = (query.get("limit") or ["1000"])[-1]
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            return json_response(400, {"message": "limit must be an integer between 1 and 1000"})
        limit = int(limit_text)
        after, before = _cursor(query, "after"), _cursor(query, "before")
        for value in (after, before):
            if isinstance(value, str):
                return json_response(400, {"message": value})
        store, history = self.simulator.store, self.simulator.config.rest_history
        if before is not None and after is None:
            records = store.since(product, int(before) + 1, limit, history)
        else:
            records = store.before(product, after if isinstance(after, int) else None, limit, history)
        rows = [rest_trade(record) for record in reversed(records)]
        headers = [("CB-BEFORE", str(rows[0]["trade_id"])), ("CB-AFTER", str(rows[-1]["trade_id"]))] if rows else []
        return json_response(200, rows, headers)

    # A static function, not a method: the feed calls it once per trade.
    encode = staticmethod(encode_trade)


#: what :func:`simulator.server.protocol_class` finds in this module by the exchange's name
PROTOCOL: type[Protocol] = CoinbaseProtocol
