"""Kraken WebSocket v2: ``status`` on connect, ``subscribe``/``unsubscribe`` acknowledgements, ``ping``/``pong``,
``heartbeat`` frames, ``trade`` snapshot/update frames whose prices and quantities are JSON numbers written from the
exact decimal strings (no float round trip), ``book`` snapshot/update frames at the subscribed depth with their
CRC32 checksum (:class:`BookView`; the project holds no Kraken book recording, so they are derived from a Binance
depth recording replayed alongside, said in the log at start); and the REST ``GET /0/public/Trades`` (``since`` a
timestamp, exclusive; rows ``[price, volume, time, side, order type, misc, trade id]``; errors, rate limits
included, in the JSON ``error`` list)."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from books.book import L2Book, Level
from books.kraken import DEPTHS, kraken_checksum
from ingest.exchanges.kraken.adapter import REST_ASSETS, rest_pair
from ingest.records import TradeRecord
from simulator.base import Protocol, Session, is_upgrade, json_response, now_ms, rfc3339
from simulator.depth import CHECKSUM, CROSS, CROSSING_PRICE, DROP, SWAP, DepthEvent, DepthTape
from simulator.faults import FrameFields

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


def _ord_type(record: TradeRecord) -> str:
    # Kraken does not say which order type took; a fixed rule keeps replays deterministic.
    return "limit" if record.trade_id % 5 == 0 else "market"


def encode_trade(record: TradeRecord) -> bytes:
    """One trade of a ``trade`` frame's ``data``, as Kraken writes it (``side`` is the taker's)."""
    ord_type = _ord_type(record).encode()
    return b'{"symbol":"%s","side":"%s","price":%s,"qty":%s,"ord_type":"%s","trade_id":%d,"timestamp":"%s"}' % (
        record.symbol.encode(),
        b"sell" if record.is_buyer_maker else b"buy",
        json_number(record.price).encode(),
        json_number(record.quantity).encode(),
        ord_type,
        record.trade_id,
        rfc3339(record.trade_time).encode(),
    )


# Kraken's REST keys older pairs by its legacy asset names: XBTUSD answers as XXBTZUSD, XBTUSDT as XBTUSDT.
_X_ASSETS = frozenset({"XBT", "ETH", "LTC", "XRP", "XLM", "XMR", "ZEC", "ETC", "MLN", "REP", "XDG"})
_Z_FIAT = frozenset({"USD", "EUR", "GBP", "JPY", "CAD"})


def rest_key(symbol: str) -> str:
    """The result key Kraken's REST uses for ``symbol`` (``BTC/USD`` -> ``XXBTZUSD``), as far as its legacy
    naming goes: both assets legacy -> prefixed (X for crypto, Z for fiat), else the plain REST pair."""
    base, _, quote = symbol.partition("/")
    base, quote = REST_ASSETS.get(base, base), REST_ASSETS.get(quote, quote)
    if base in _X_ASSETS and (quote in _X_ASSETS or quote in _Z_FIAT):
        return f"X{base}{'Z' if quote in _Z_FIAT else 'X'}{quote}"
    return base + quote


def rest_row(record: TradeRecord) -> list[Any]:
    """One row of ``/0/public/Trades``: price and volume as decimal strings, the time as seconds (a JSON number
    written exactly), taker side ``b``/``s``, order type ``m``/``l``, misc, trade id."""
    seconds, millis = divmod(record.trade_time, 1000)
    return [
        record.price,
        record.quantity,
        orjson.Fragment(b"%d.%03d0000" % (seconds, millis)),
        "s" if record.is_buyer_maker else "b",
        _ord_type(record)[0],
        "",
        record.trade_id,
    ]


def _since_ms(text: str) -> int | None:
    # ``since``: seconds (with a fraction, or up to 10 digits) or nanoseconds; the ms it means (floored).
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    if "." in text or value < 10**11:
        return int(value * 1000)
    return int(value) // 1_000_000


def _stamp() -> str:
    return rfc3339(now_ms())


def _book_levels(levels: list[Level]) -> bytes:
    return b",".join(b'{"price":%s,"qty":%s}' % (format(p, "f").encode(), format(q, "f").encode()) for p, q in levels)


def book_frame(kind: bytes, symbol: str, bids: list[Level], asks: list[Level], checksum: int, stamp: str = "") -> bytes:
    """A v2 ``book`` frame: levels as JSON numbers written from the exact decimals, an update with its timestamp."""
    tail = b',"timestamp":"%s"' % stamp.encode() if stamp else b""
    return b'{"channel":"book","type":"%s","data":[{"symbol":"%s","bids":[%s],"asks":[%s],"checksum":%d%s}]}' % (
        kind,
        symbol.encode(),
        _book_levels(bids),
        _book_levels(asks),
        checksum,
        tail,
    )


class BookView:
    """One ``book`` subscription of a connection: the true book (a copy of the market's at subscribe, then every
    event applied in true order, sent or not) and the ``depth`` best levels a side the client was shown."""

    def __init__(self, symbol: str, depth: int, tape: DepthTape | None) -> None:
        """The book of ``symbol`` as the market holds it now (empty without depth)."""
        self.symbol = symbol
        self.depth = depth
        self.full = L2Book()
        self.since = -1  # the last event id the copy holds: events up to it are already in it
        found = tape.book(symbol) if tape is not None else None
        if found is not None:
            book, last_id = found
            self.full.apply_snapshot(book.bids.top(len(book.bids)), book.asks.top(len(book.asks)))
            self.since = -1 if last_id is None else last_id
        self.levels = tape.levels if tape is not None else None
        self.bids = dict(self.full.bids.top(depth))
        self.asks = dict(self.full.asks.top(depth))

    def snapshot(self) -> bytes:
        """The ``snapshot`` frame of the shown levels."""
        bids, asks = self.full.top(self.depth)
        return book_frame(b"snapshot", self.symbol, bids, asks, kraken_checksum(self.full_view()))

    def full_view(self, extra_bid: Level | None = None) -> L2Book:
        """The book the client holds: the shown levels (and ``extra_bid``), truncated to the depth."""
        view = L2Book()
        view.apply_snapshot(list(self.bids.items()) + ([extra_bid] if extra_bid else []), self.asks.items())
        view.bids.truncate(self.depth)
        return view

    def update(self, event: DepthEvent) -> bytes | None:
        """The ``update`` frame ``event`` makes (None when the shown levels did not change), its fault applied:
        a crossing one carries one more bid and the checksum of the book that makes, a corrupted one a wrong
        checksum. Levels pushed out of the depth get no delete, as Kraken documents."""
        assert self.levels is not None
        if event.last_id <= self.since:
            return None
        full = self.full
        full.apply(*self.levels(event.data))
        bids, asks = dict(full.bids.top(self.depth)), dict(full.asks.top(self.depth))
        changes: list[list[Level]] = []
        for old, new, side in ((self.bids, bids, full.bids.levels), (self.asks, asks, full.asks.levels)):
            changed = [(p, q) for p, q in new.items() if old.get(p) != q]
            changed += [(p, Decimal(0)) for p in old if p not in new and p not in side]
            changes.append(changed)
        self.bids, self.asks = bids, asks
        if not changes[0] and not changes[1] and event.fault != CROSS:
            return None
        extra = (Decimal(CROSSING_PRICE), Decimal(1)) if event.fault == CROSS else None
        checksum = kraken_checksum(self.full_view(extra))
        if extra is not None:
            changes[0].append(extra)
        if event.fault == CHECKSUM:
            checksum = (checksum + 1) % (1 << 32)
        stamp = rfc3339(orjson.loads(event.data).get("E", now_ms()))
        return book_frame(b"update", self.symbol, changes[0], changes[1], checksum, stamp)


class KrakenSession(Session):
    """One Kraken v2 connection."""

    fields = FrameFields("price", "qty", quoted=False)

    def __init__(self, simulator: Any, connection: Any, number: int) -> None:
        super().__init__(simulator, connection, number)
        self.pairs: dict[str, None] = {}
        self.books: dict[str, BookView] = {}
        self._held: bytes | None = None  # a book update sent after the next one (--depth-swap-every)
        self.heartbeat_started = False

    def _trade_frame(self, kind: bytes, trades: list[bytes]) -> bytes:
        return b'{"channel":"trade","type":"%s","data":[%s]}' % (kind, b",".join(trades))

    def frames(self, chunk: list[tuple[TradeRecord, Any]]) -> list[bytes]:
        """``update`` frames per pair, oldest first, at most ``batch_size`` trades each."""
        if self.books:
            return self._with_books(chunk)
        return self._trade_frames(chunk)

    def _with_books(self, chunk: list[tuple[Any, Any]]) -> list[bytes]:
        # Book updates of the book subscriptions and trades of the trade ones, in feed order.
        out: list[bytes] = []
        trades: list[tuple[TradeRecord, Any]] = []
        for item in chunk:
            record = item[0]
            if record.__class__ is DepthEvent:
                view = self.books.get(record.symbol)
                frame = view.update(record) if view is not None else None
                if frame is None:
                    continue
                if trades:
                    out.extend(self._trade_frames(trades))
                    trades = []
                if record.fault == DROP:
                    continue  # the client's book misses it: its next checksum (over the top 10) fails
                if record.fault == SWAP and self._held is None:
                    self._held = frame
                    continue
                out.append(frame)
                if self._held is not None:
                    out.append(self._held)
                    self._held = None
            elif record.symbol in self.pairs:
                trades.append(item)
        if trades:
            out.extend(self._trade_frames(trades))
        return out

    def _trade_frames(self, chunk: list[tuple[TradeRecord, Any]]) -> list[bytes]:
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
        if isinstance(params, dict) and params.get("channel") == "book":
            await self._book(method, params, req_id, time_in)
            return
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
            self.subscriber.unsubscribe([pair for pair in accepted if pair not in self.books])
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

    async def _book(self, method: str, params: dict[str, Any], req_id: Any, time_in: str) -> None:
        """``book`` subscribe (``depth`` 10, 25, 100, 500 or 1000, default 10; a snapshot unless ``snapshot`` is
        false) and unsubscribe; subscribing a symbol already subscribed is refused, as Kraken does."""
        pairs = params.get("symbol")
        depth = params.get("depth", 10)
        if not isinstance(pairs, list) or not pairs or not all(isinstance(p, str) for p in pairs):
            await self.error(method, "symbol must be a non-empty list of pairs", req_id)
            return
        if depth not in DEPTHS or isinstance(depth, bool):
            await self.error(method, f"Invalid depth {depth!r}: one of {', '.join(map(str, DEPTHS))}", req_id)
            return
        known = self.simulator.feed.symbols()
        tape = self.simulator.depth
        frames: list[bytes] = []
        for pair in pairs:
            if "/" not in pair or (known and pair not in known):
                await self.error(method, f"Currency pair not supported {pair}", req_id, symbol=pair)
                continue
            if method == "subscribe" and pair in self.books:
                await self.error(method, "Already subscribed", req_id, symbol=pair)
                continue
            if method == "unsubscribe" and pair not in self.books:
                await self.error(method, "Subscription Not Found", req_id, symbol=pair)
                continue
            result: dict[str, Any] = {"channel": "book", "depth": depth, "symbol": pair}
            if method == "subscribe":
                result["snapshot"] = params.get("snapshot", True)
            ack: dict[str, Any] = {"method": method, "result": result, "success": True, "time_in": time_in}
            ack["time_out"] = _stamp()
            if req_id is not None:
                ack["req_id"] = req_id
            frames.append(orjson.dumps(ack))
            if method == "unsubscribe":
                del self.books[pair]
                if pair not in self.pairs:
                    self.subscriber.unsubscribe([pair])
                continue
            # The view is taken, the feed joined and the snapshot written without yielding: every later event
            # goes out, none already in the snapshot.
            view = self.books[pair] = BookView(pair, depth, tape)
            if params.get("snapshot", True):
                frames.append(view.snapshot())
            self.subscriber.subscribe([pair])
        self.subscriber.depth = bool(self.books)
        if frames:
            await self.send_control(frames)
        if self.books and not self.heartbeat_started:
            self.heartbeat_started = True
            self.spawn(self._heartbeat())


class KrakenProtocol(Protocol):
    """Kraken WebSocket v2 (any path, ``/v2`` in the real URL)."""

    name = "kraken"
    session: ClassVar[type[Session]] = KrakenSession
    # Public REST: about one call a second per IP, with a burst (15 calls, decaying one a second here).
    rest_limit = (1.0, 15.0)

    def http(self, connection: ServerConnection, request: Request) -> Response | None:
        """REST ``/0/public/Trades``; WebSocket upgrades (``/v2`` or any path) go on."""
        if is_upgrade(request):
            return None
        url = urlsplit(request.path)
        if url.path.rstrip("/") != "/0/public/Trades":
            return json_response(404, {"error": ["EGeneral:Unknown method"]})
        if not self.rest_bucket.allow():
            return json_response(200, {"error": ["EGeneral:Too many requests"]})
        return self.trades(parse_qs(url.query))

    def _symbol(self, pair: str) -> str | None:
        for symbol in self.simulator.feed.symbols():
            if pair.upper() in (symbol, rest_pair(symbol), rest_key(symbol)):
                return symbol
        return None

    def trades(self, query: dict[str, list[str]]) -> Response:
        """Up to ``count`` trades after ``since`` (oldest first; without it the latest), keyed by Kraken's pair
        name, with ``last`` the time (ns) to ask ``since`` next."""
        pair = (query.get("pair") or [""])[-1]
        symbol = self._symbol(pair) if pair else None
        if symbol is None:
            return json_response(200, {"error": ["EQuery:Unknown asset pair"]})
        count_text = (query.get("count") or ["1000"])[-1]
        since_text = (query.get("since") or [""])[-1]
        since_ms = _since_ms(since_text) if since_text else None
        if not count_text.isdigit() or not 1 <= int(count_text) <= 1000 or (since_text and since_ms is None):
            return json_response(200, {"error": ["EGeneral:Invalid arguments"]})
        store, history = self.simulator.store, self.simulator.config.rest_history
        if since_ms is None:
            records = store.latest(symbol, int(count_text))
        else:
            records = store.after_time(symbol, since_ms, int(count_text), history)
        last = str(records[-1].trade_time * 1_000_000) if records else (since_text if since_text.isdigit() else "0")
        return json_response(
            200, {"error": [], "result": {rest_key(symbol): [rest_row(r) for r in records], "last": last}}
        )

    # A static function, not a method: the feed calls it once per trade.
    encode = staticmethod(encode_trade)


#: what :func:`simulator.server.protocol_class` finds in this module by the exchange's name
PROTOCOL: type[Protocol] = KrakenProtocol
