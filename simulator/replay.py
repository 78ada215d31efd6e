"""Readers of recorded trade files, for replaying real markets through the exchange simulator.

Every reader is a generator of :class:`ingest.records.TradeRecord` (streaming: a million-row file is never held
in memory) with the exact price and quantity strings of the file and times in epoch milliseconds. Files may be
plain, gzip or zstandard compressed (detected by magic bytes); the layout is detected per file, from the
structure of its first 20 non-empty lines (:func:`detect_format`):

- ``binance-ws``: Binance WebSocket frames, one per line, bare events or combined-stream envelopes, optionally
  prefixed by a numeric receive timestamp and a space. Frames of other streams (bookTicker, depth, REST
  snapshots) are skipped; old trade events that still carry ``b``/``a`` are accepted.
- ``binance-vision-csv``: the data.binance.vision trades CSV
  (``id,price,qty,quote_qty,time,is_buyer_maker,is_best_match``), with or without header, times in ms or µs.
  The symbol comes from the file name (``BTCUSDT-trades-2024-08-08.csv``) or an explicit override.
- ``binance-trade-csv``: the flattened trade-stream CSV (``TimestampOfReceive,Stream,EventType,...``).
- ``coinbase-jsonl``: cryptofeed's Coinbase Advanced Trade recordings (``{"t":"recv","data":"<frame>"}`` lines).
- any registered exchange's WebSocket frames, one per line, with the recorder's ``<receive ns> <frame>`` prefix or
  bare: when the first :data:`EXCHANGE_SAMPLE_LINES` lines are JSON frames, the registered exchange whose own
  parser (``ingest.exchanges``) reads the most trades from them reads the file (Binance, with the reader above, when
  none reads more); ``exchange`` names it outright. Bare frames' trades take their event time as receive time.
- ``cryptofeed-raw``: cryptofeed's raw WebSocket recordings (``<url> <-> <time>`` connects, ``<url> <- <time>: <sent>``,
  ``<time>: <received frame>``, times in epoch seconds). Received frames are read by the parser of the registered
  exchange whose parser finds trades in them (OKX's ``OKX.ws.1.0``), so any registered exchange's recording replays.
"""

from __future__ import annotations

import gzip
import heapq
import io
import logging
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import orjson
import zstandard

from ingest import exchanges
from ingest.exchanges.base import rfc3339_ms
from ingest.records import InvalidRecordError, TradeRecord, make_trade

logger = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_VISION_NAME = re.compile(r"^([A-Za-z0-9]+)-trades-", re.ASCII)
_TRUE = frozenset({b"true", b"True", b"TRUE", b"1"})
_FALSE = frozenset({b"false", b"False", b"FALSE", b"0"})
# What a truncated or corrupt compressed file raises while being read.
_READ_ERRORS = (OSError, EOFError, zlib.error, zstandard.ZstdError)


class ReplayError(ValueError):
    """A recorded file that cannot be replayed (unknown layout, no symbol, unreadable)."""


class ReplayFormat(StrEnum):
    """The recorded layouts :func:`read_trades` understands."""

    BINANCE_WS = "binance-ws"
    VISION_CSV = "binance-vision-csv"
    TRADE_STREAM_CSV = "binance-trade-csv"
    COINBASE_JSONL = "coinbase-jsonl"
    CRYPTOFEED_RAW = "cryptofeed-raw"


def to_millis(value: int | float) -> int:
    """Epoch seconds, milliseconds, microseconds or nanoseconds -> milliseconds, judged by magnitude."""
    if value < 100_000_000_000:  # before year 5138 in seconds, before 1973 in ms: seconds
        return int(value * 1000)
    if value < 100_000_000_000_000:
        return int(value)
    if value < 100_000_000_000_000_000:
        return int(value) // 1000
    return int(value) // 1_000_000


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a file for reading, decompressing gzip or zstandard by magic bytes."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    magic = raw.read(4)
    raw.seek(0)
    if magic.startswith(_GZIP_MAGIC):
        # A BufferedReader on top: line iteration on GzipFile itself is several times slower.
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), 1 << 20)
    if magic == _ZSTD_MAGIC:
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return raw


#: how many non-empty lines :func:`detect_format` judges
SAMPLE_LINES = 20
_DECIMAL = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_BOOLEAN = _TRUE | _FALSE
_COINBASE_KINDS = frozenset({"header", "http", "connect", "send", "recv"})
# A cryptofeed raw recording line: ``[<url> <-|->|<-> ]<epoch s with a fraction>[: <frame>]``.
_CRYPTOFEED_LINE = re.compile(rb"(?:\S+ (?:<->|<-|->) )?([0-9]{9,11}\.[0-9]+)(?:: (.*))?", re.DOTALL)


def _head(path: str | Path, count: int = SAMPLE_LINES) -> list[bytes]:
    """The first ``count`` non-empty lines, stripped."""
    lines: list[bytes] = []
    try:
        with open_binary(path) as handle:
            for line in handle:
                stripped = line.strip()
                if stripped:
                    lines.append(stripped)
                    if len(lines) == count:
                        break
    except _READ_ERRORS as exc:
        raise ReplayError(f"{path}: cannot read the file: {exc}") from None
    return lines


def _is_vision_row(line: bytes) -> bool:
    """``id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]`` with numbers and booleans where due."""
    fields = line.split(b",")
    if len(fields) not in (6, 7):
        return False
    return (
        fields[0].isdigit()
        and fields[4].isdigit()
        and all(_DECIMAL.fullmatch(field) for field in fields[1:4])
        and all(field in _BOOLEAN for field in fields[5:])
    )


def _json_frame(line: bytes) -> Any:
    """The JSON value of a frame line (after an optional numeric receive-time prefix), or ``None``."""
    head, _, tail = line.partition(b" ")
    frame = tail.lstrip() if head.isdigit() and tail.lstrip().startswith((b"{", b"[")) else line
    if not frame.startswith((b"{", b"[")):
        return None
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        return _NOT_JSON


_NOT_JSON = object()  # a line that starts like JSON and does not parse


def _line_kind(line: bytes, first: bool) -> str:
    if first and line.startswith(b"id,price,qty"):
        return "vision"
    if _CRYPTOFEED_LINE.fullmatch(line):
        return "cryptofeed"
    if _is_vision_row(line):
        return "vision"
    value = _json_frame(line)
    if value is None:
        return "other"
    if value is _NOT_JSON:
        return "broken-json"
    if isinstance(value, dict) and value.get("t") in _COINBASE_KINDS:
        return "coinbase"
    return "json"


def _guarded(path: str | Path, records: Iterator[TradeRecord]) -> Iterator[TradeRecord]:
    try:
        yield from records
    except _READ_ERRORS as exc:
        raise ReplayError(f"{path}: cannot read the file: {exc}") from None


def detect_format(path: str | Path) -> ReplayFormat:
    """Which recorded layout ``path`` holds, judged on the structure of its first non-empty lines.

    Each of the first :data:`SAMPLE_LINES` lines is classified (a JSON frame after an optional numeric receive
    time, a Coinbase recording entry, a data.binance.vision row with numbers and booleans where due, or none);
    the layout most lines share wins when it holds at least half of them. A comma count alone would take a
    ``<receive ns> {"stream":"btcusdt@bookTicker",...}`` line (6 commas, numeric prefix) for a CSV row.
    """
    lines = _head(path)
    if not lines:
        raise ReplayError(f"{path}: the file is empty")
    header = set(lines[0].rstrip(b"\r\n").split(b","))
    if header >= _TRADE_STREAM_COLUMNS:
        # A header naming every column the reader needs; a truncated one is one odd line that the rows may outvote.
        return ReplayFormat.TRADE_STREAM_CSV
    kinds = [_line_kind(line, index == 0) for index, line in enumerate(lines)]
    counts = {kind: kinds.count(kind) for kind in set(kinds)}
    frames = counts.get("json", 0) + counts.get("coinbase", 0)
    vision = counts.get("vision", 0)
    if frames * 2 >= len(lines) and frames > vision:
        return ReplayFormat.COINBASE_JSONL if counts.get("coinbase", 0) * 2 > frames else ReplayFormat.BINANCE_WS
    if vision * 2 >= len(lines) and vision > frames:
        return ReplayFormat.VISION_CSV
    if counts.get("cryptofeed", 0) * 2 >= len(lines):
        return ReplayFormat.CRYPTOFEED_RAW
    if lines[0].startswith(b"TimestampOfReceive,"):
        missing = b", ".join(sorted(_TRADE_STREAM_COLUMNS - header)).decode()
        raise ReplayError(f"{path}: a trade-stream CSV header with a missing column: {missing}")
    seen = ", ".join(f"{counts[kind]} {_KIND_NAMES[kind]}" for kind in sorted(counts))
    if counts.get("broken-json", 0) * 2 >= len(lines):
        raise ReplayError(f"{path}: not JSON: of the first {len(lines)} lines, {seen} (first line {lines[0][:60]!r})")
    raise ReplayError(f"{path}: unknown layout: of the first {len(lines)} lines, {seen} (first line {lines[0][:60]!r})")


_KIND_NAMES = {
    "vision": "data.binance.vision CSV",
    "json": "JSON frames",
    "coinbase": "Coinbase recording entries",
    "cryptofeed": "cryptofeed raw recording lines",
    "broken-json": "not JSON though they start like it",
    "other": "neither",
}


def _bool(field: bytes, what: str) -> bool:
    if field in _TRUE:
        return True
    if field in _FALSE:
        return False
    raise InvalidRecordError(f"{what} is not a boolean: {field[:20]!r}")


def _skip(path: str | Path, lineno: int, reason: str) -> None:
    logger.warning("replay: skipping a bad line", extra={"path": str(path), "line": lineno, "reason": reason})


def _binance_ws(path: str | Path) -> Iterator[TradeRecord]:
    with open_binary(path) as handle:
        for lineno, line in enumerate(handle, 1):
            # Cheap substring test first: most lines of a full recording are depth and bookTicker frames.
            if b'"trade"' not in line:
                continue
            received: int | None = None
            if line[:1].isdigit():
                head, _, line = line.partition(b" ")
                received = to_millis(int(head))
            try:
                frame = orjson.loads(line)
                if not isinstance(frame, dict):
                    continue
                if "data" in frame:
                    stream = frame.get("stream")
                    if isinstance(stream, str) and not stream.endswith("@trade"):
                        continue
                    frame = frame["data"]
                if not isinstance(frame, dict) or frame.get("e") != "trade":
                    continue
                trade_time = to_millis(frame["T"])
                event_time = to_millis(frame["E"] if "E" in frame else frame["T"])
                yield make_trade(
                    exchange="binance",
                    symbol=frame["s"],
                    trade_id=frame["t"],
                    price=frame["p"],
                    quantity=frame["q"],
                    is_buyer_maker=frame["m"],
                    trade_time=trade_time,
                    event_time=event_time,
                    received_at=received if received is not None else event_time,
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                _skip(path, lineno, getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}")


def vision_symbol(path: str | Path) -> str | None:
    """The symbol a data.binance.vision file name carries (``BTCUSDT-trades-2024-08-08.csv``), if any."""
    match = _VISION_NAME.match(Path(path).name)
    return match.group(1).upper() if match else None


def _vision_csv(path: str | Path, symbol: str | None) -> Iterator[TradeRecord]:
    symbol = symbol or vision_symbol(path)
    if not symbol:
        raise ReplayError(f"{path}: no symbol in the file name (like BTCUSDT-trades-2024-08-08.csv); pass --symbol")
    symbol = symbol.upper()
    with open_binary(path) as handle:
        for lineno, line in enumerate(handle, 1):
            fields = line.rstrip(b"\r\n").split(b",")
            if len(fields) < 6 or not fields[0].isdigit():
                if lineno > 1 and line.strip():
                    _skip(path, lineno, "not a trade row")
                continue
            try:
                trade_time = to_millis(int(fields[4]))
                yield make_trade(
                    exchange="binance",
                    symbol=symbol,
                    trade_id=int(fields[0]),
                    price=fields[1].decode("ascii"),
                    quantity=fields[2].decode("ascii"),
                    is_buyer_maker=_bool(fields[5], "is_buyer_maker"),
                    trade_time=trade_time,
                    event_time=trade_time,
                    received_at=trade_time,
                )
            except (ValueError, UnicodeDecodeError) as exc:
                _skip(path, lineno, getattr(exc, "reason", None) or str(exc))


# The trade-stream CSV's columns the reader uses (its header names them, in any order, among others).
_TRADE_STREAM_COLUMNS = frozenset(
    {b"TimestampOfReceive", b"EventType", b"EventTime", b"TransactionTime", b"Symbol", b"TradeId"}
    | {b"Price", b"Quantity", b"IsBuyerMarketMaker"}
)


def _trade_stream_csv(path: str | Path) -> Iterator[TradeRecord]:
    with open_binary(path) as handle:
        header = handle.readline().rstrip(b"\r\n").split(b",")
        try:
            col = {name: header.index(name) for name in sorted(_TRADE_STREAM_COLUMNS)}
        except ValueError as exc:
            raise ReplayError(f"{path}: missing column in the header: {exc}") from None
        width = max(col.values()) + 1
        for lineno, line in enumerate(handle, 2):
            fields = line.rstrip(b"\r\n").split(b",")
            if len(fields) < width or fields[col[b"EventType"]] != b"trade":
                if line.strip():
                    _skip(path, lineno, "not a trade row")
                continue
            try:
                yield make_trade(
                    exchange="binance",
                    symbol=fields[col[b"Symbol"]].decode("ascii"),
                    trade_id=int(fields[col[b"TradeId"]]),
                    price=fields[col[b"Price"]].decode("ascii"),
                    quantity=fields[col[b"Quantity"]].decode("ascii"),
                    is_buyer_maker=_bool(fields[col[b"IsBuyerMarketMaker"]], "IsBuyerMarketMaker"),
                    trade_time=to_millis(int(fields[col[b"TransactionTime"]])),
                    event_time=to_millis(int(fields[col[b"EventTime"]])),
                    received_at=to_millis(int(fields[col[b"TimestampOfReceive"]])),
                )
            except (ValueError, UnicodeDecodeError) as exc:
                _skip(path, lineno, getattr(exc, "reason", None) or str(exc))


def _coinbase_trade(trade: Any, event_time: int, received: int) -> TradeRecord:
    side = trade["side"]
    if side not in ("BUY", "SELL"):
        raise InvalidRecordError(f"unknown side {side!r}")
    return make_trade(
        exchange="coinbase",
        symbol=trade["product_id"],
        trade_id=trade["trade_id"],
        price=trade["price"],
        quantity=trade["size"],
        is_buyer_maker=side == "SELL",  # side is the taker's
        trade_time=rfc3339_ms(trade["time"]),
        event_time=event_time,
        received_at=received,
    )


def _coinbase_jsonl(path: str | Path) -> Iterator[TradeRecord]:
    # Snapshots repeat recent trades and list them newest first, so a recording is de-duplicated and put in
    # trade order; these recordings are small (a session of frames), so holding one in memory is fine.
    seen: dict[tuple[str, int], TradeRecord] = {}
    with open_binary(path) as handle:
        for lineno, line in enumerate(handle, 1):
            if b"market_trades" not in line:
                continue
            try:
                entry = orjson.loads(line)
                if entry.get("t") != "recv":
                    continue
                frame = orjson.loads(entry["data"])
                if frame.get("channel") != "market_trades":
                    continue
                received = to_millis(entry.get("ts", 0)) if entry.get("ts") else None
                event_time = rfc3339_ms(frame["timestamp"])
                for event in frame["events"]:
                    for trade in event.get("trades", ()):
                        record = _coinbase_trade(trade, event_time, received or event_time)
                        seen.setdefault((record.symbol, record.trade_id), record)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                _skip(path, lineno, getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}")
    yield from sorted(seen.values(), key=lambda r: (r.trade_time, r.symbol, r.trade_id))


#: how many non-empty lines of a frames file each registered exchange's parser is tried on
EXCHANGE_SAMPLE_LINES = 200


def _now_ms() -> int:
    """The receive time bare frames are parsed with: now, after any recorded trade (their trades then take their
    event time as receive time)."""
    return int(time.time() * 1000)


def _split_received(line: bytes) -> tuple[int | None, bytes]:
    """(receive time in ms or None, frame) of a ``[<receive time> ]<frame>`` line."""
    if line[:1].isdigit():
        head, _, rest = line.partition(b" ")
        rest = rest.lstrip()
        if head.isdigit() and rest.startswith((b"{", b"[")):
            return to_millis(int(head)), rest
    return None, line


def frames_exchange(path: str | Path) -> str:
    """The registered exchange whose own parser reads the most trades from the file's first lines; Binance when none
    reads more (its reader also skips the frames of its other streams, which a sample may hold only)."""
    lines = _head(path, EXCHANGE_SAMPLE_LINES)
    best, most = "binance", 0
    for name in exchanges.names():
        parser = exchanges.get(name).adapter("ws://replay.invalid").parser()
        count = 0
        for line in lines:
            received, frame = _split_received(line)
            count += len(parser.parse(frame, _now_ms() if received is None else received).trades)
        if count > most:
            best, most = name, count
    return best


def _exchange_frames(path: str | Path, exchange: str) -> Iterator[TradeRecord]:
    """The trades ``exchange``'s own parser reads from a file of its frames (one connection's, in order)."""
    parser = exchanges.get(exchange).adapter("ws://replay.invalid").parser()
    with open_binary(path) as handle:
        for lineno, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line:
                continue
            received, frame = _split_received(line)
            result = parser.parse(frame, _now_ms() if received is None else received)
            for bad in result.bad:
                _skip(path, lineno, bad.reason)
            for trade in result.trades:
                yield trade if received is not None else trade._replace(received_at=trade.event_time)


def _cryptofeed_raw(path: str | Path) -> Iterator[TradeRecord]:
    # The received frames (no URL prefix) parsed by the registered exchange whose parser finds trades in them;
    # de-duplicated and put in trade order like the Coinbase recordings (small: a session of frames).
    from ingest.exchanges import descriptors  # here: the registry imports every adapter

    parsers = [descriptor.adapter("ws://replay").parser() for descriptor in descriptors()]
    seen: dict[tuple[str, int], TradeRecord] = {}
    with open_binary(path) as handle:
        for line in handle:
            match = _CRYPTOFEED_LINE.fullmatch(line.strip())
            if match is None or match.group(2) is None or not line[:1].isdigit():
                continue  # not a received frame: a connect, a sent message, an HTTP answer
            received = to_millis(float(match.group(1)))
            for parser in parsers:
                result = parser.parse(match.group(2), received)
                if result.trades:
                    parsers = [parser]  # the recording's exchange: found, kept
                    for record in result.trades:
                        seen.setdefault((record.symbol, record.trade_id), record)
                    break
    yield from sorted(seen.values(), key=lambda r: (r.trade_time, r.symbol, r.trade_id))


def read_trades(path: str | Path, symbol: str | None = None, exchange: str | None = None) -> Iterator[TradeRecord]:
    """The trades of one recorded file, in file order. ``symbol`` overrides a vision CSV's file-name symbol;
    ``exchange`` says whose frames a frames file holds (else the registered parsers judge, see
    :func:`frames_exchange`)."""
    if not Path(path).is_file():
        raise ReplayError(f"{path}: no such file")
    kind = detect_format(path)
    if kind is ReplayFormat.BINANCE_WS:
        whose = exchanges.get(exchange).name if exchange else frames_exchange(path)
        if whose != "binance":
            return _guarded(path, _exchange_frames(path, whose))
        return _guarded(path, _binance_ws(path))
    if kind is ReplayFormat.VISION_CSV:
        return _guarded(path, _vision_csv(path, symbol))
    if kind is ReplayFormat.TRADE_STREAM_CSV:
        return _guarded(path, _trade_stream_csv(path))
    if kind is ReplayFormat.CRYPTOFEED_RAW:
        return _guarded(path, _cryptofeed_raw(path))
    return _guarded(path, _coinbase_jsonl(path))


def _by_time(record: TradeRecord) -> int:
    return record.trade_time


def read_many(paths: Iterable[str | Path], symbol: str | None = None) -> Iterator[TradeRecord]:
    """The trades of several files merged by trade time (each file is in time order already)."""
    streams = [read_trades(path, symbol) for path in paths]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=_by_time)
