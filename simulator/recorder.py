"""Raw-frame recorder: every WebSocket frame an exchange sends, with its receive time, for replay later.

Layout: one line per frame, ``<receive time, epoch ns> <frame>``, the layout ``simulate_exchange --replay`` reads
(``simulator.replay``, ``binance-ws``). Files rotate every UTC hour of receive time and end zstandard-compressed:
``<exchange>-<YYYY-MM-DD>T<HH>.frames.zst`` (``.<n>`` before the suffix when that hour already has a file, after
a restart).

Crash safety: the current hour is written as plain lines to ``<stem>.frames.part`` (flushed and fsynced every
``flush_interval`` seconds); at rotation and on close its complete lines are compressed to ``<stem>.frames.zst.tmp``,
fsynced and renamed to the final name, then the ``.part`` is removed. A finished file is therefore never corrupt,
and a crash leaves only a ``.part`` that ``simulate_exchange --replay`` reads as it is, up to its last complete
line (the frames of the last ``flush_interval`` may be lost). The next recorder started on the directory finishes
such leftovers (:func:`recover_parts`). Plain ``.part`` files rather than a flushed zstd stream: the zstd reader
the replay uses stops early on an unfinished frame. One recorder per exchange and directory (a lock file).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson
import zstandard

from ingest.client import WsClient
from ingest.exchanges import get
from ingest.exchanges.base import ConnectionPlan
from ingest.journal import fsync_dir

logger = logging.getLogger(__name__)

HOUR_NS = 3600 * 1_000_000_000
SUFFIX = ".frames.zst"
PART_SUFFIX = ".frames.part"
_EXCHANGE = re.compile(r"^[a-z0-9]+$")


class RecorderError(RuntimeError):
    """The recorder cannot start or write (directory, lock); the message says why."""


def hour_name(exchange: str, hour: int) -> str:
    """``binance-2024-08-08T13`` for the hour ``hour`` (epoch ns // HOUR_NS)."""
    return f"{exchange}-{time.strftime('%Y-%m-%dT%H', time.gmtime(hour * 3600))}"


def part_of(path: Path) -> Path:
    """The ``.part`` being written for the finished file ``path``."""
    return path.with_name(path.name[: -len(SUFFIX)] + PART_SUFFIX)


def free_name(directory: Path, stem: str) -> Path:
    """``<stem>.frames.zst``, or ``<stem>.<n>.frames.zst`` when that (or its ``.part``) is already taken."""
    number = 0
    while True:
        path = directory / (stem + (f".{number}" if number else "") + SUFFIX)
        if not path.exists() and not part_of(path).exists():
            return path
        number += 1


def compress_part(part: Path, target: Path, level: int = 3) -> int:
    """Compress the complete lines of ``part`` into ``target`` (via a fsynced ``.tmp`` and a rename), then remove
    ``part``. Returns the number of lines kept (a line cut by a crash is not a frame and is dropped)."""
    tmp = target.with_name(target.name + ".tmp")
    kept = 0
    with open(part, "rb") as source, open(tmp, "wb") as out:
        writer = zstandard.ZstdCompressor(level=level).stream_writer(out, closefd=False)
        for line in source:
            if not line.endswith(b"\n"):
                break
            writer.write(line)
            kept += 1
        writer.close()
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, target)
    part.unlink()
    fsync_dir(target.parent)  # a rename or unlink is durable only once the directory entry is
    return kept


def recover_parts(directory: Path, exchange: str, level: int = 3) -> list[Path]:
    """Finish the ``.part`` files a crashed recorder of ``exchange`` left in ``directory``; returns the files."""
    finished = []
    for part in sorted(directory.glob(f"{exchange}-*{PART_SUFFIX}")):
        target = part.with_name(part.name[: -len(PART_SUFFIX)] + SUFFIX)
        if target.exists():  # the crash came after the rename, before the unlink: the file is complete
            part.unlink()
            continue
        kept = compress_part(part, target, level)
        logger.warning(
            "recorder: finished a .part left by a crash", extra={"part": str(part), "file": str(target), "lines": kept}
        )
        finished.append(target)
    return finished


class FrameRecorder:
    """Writes ``<recv ns> <frame>`` lines to hourly files in ``directory`` (thread-safe)."""

    def __init__(
        self,
        directory: str | Path,
        exchange: str,
        *,
        flush_interval: float = 1.0,
        level: int = 3,
    ) -> None:
        if not _EXCHANGE.match(exchange):
            raise RecorderError(f"exchange must be lower-case letters and digits, got {exchange!r}")
        self.directory = Path(directory)
        self.exchange = exchange
        self.flush_interval = flush_interval
        self.level = level
        self.frames = 0
        self.bytes = 0
        self.finished: list[Path] = []
        self._lock = threading.Lock()
        self._hour: int | None = None
        self._path: Path | None = None
        self._file: IO[bytes] | None = None
        self._flushed_at = 0.0  # time.monotonic() of the last flush
        self._compressing: list[threading.Thread] = []
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.directory / f".{exchange}.record.lock", "wb")  # noqa: SIM115 - held open
        except OSError as exc:
            raise RecorderError(f"--out {self.directory}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise RecorderError(f"another recorder of {exchange} writes to {self.directory}") from None
        self.finished.extend(recover_parts(self.directory, exchange, level))

    def write(self, frame: bytes, received_ns: int) -> None:
        """Append one frame received at ``received_ns`` (epoch ns)."""
        # A frame is one line: JSON whitespace outside strings may be any blank, and JSON strings cannot hold a
        # raw newline, so replacing CR and LF by spaces changes nothing a parser sees.
        if b"\n" in frame or b"\r" in frame:
            frame = frame.replace(b"\r", b" ").replace(b"\n", b" ")
        line = b"%d %s\n" % (received_ns, frame)
        with self._lock:
            hour = received_ns // HOUR_NS
            # Threads of several connections may stamp out of order across the hour: never go back an hour.
            if self._hour is None or hour > self._hour:
                self._open(hour)
            handle = self._file
            assert handle is not None
            handle.write(line)
            self.frames += 1
            self.bytes += len(line)
            # The local clock, not the receive stamps: a stamp is whatever the caller measured (or replays).
            if time.monotonic() - self._flushed_at >= self.flush_interval:
                self._flush()

    def flush(self) -> None:
        """Put everything written so far on disk (fsynced)."""
        with self._lock:
            self._flush()

    def close(self) -> None:
        """Finish the current file (waiting for every compression) and release the directory."""
        with self._lock:
            self._finish()
            self._hour = None
        for thread in self._compressing:
            thread.join()
        self._compressing.clear()
        if not self._lock_file.closed:
            self._lock_file.close()

    def _flush(self) -> None:
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._flushed_at = time.monotonic()

    def _open(self, hour: int) -> None:
        self._finish()
        path = free_name(self.directory, hour_name(self.exchange, hour))
        self._file = open(part_of(path), "wb", buffering=1 << 20)  # noqa: SIM115 - closed in _finish
        self._path, self._hour = path, hour
        self._flushed_at = time.monotonic()
        logger.info("recorder: writing", extra={"file": str(part_of(path))})

    def _finish(self) -> None:
        if self._file is None or self._path is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        path = self._path
        self._file = self._path = None
        self.finished.append(path)
        # Compressing an hour takes a while: not on the receiving thread, which goes on with the next hour.
        thread = threading.Thread(target=self._compress, args=(path,), name="record-compress")
        self._compressing = [t for t in self._compressing if t.is_alive()]
        self._compressing.append(thread)
        thread.start()

    def _compress(self, path: Path) -> None:
        kept = compress_part(part_of(path), path, self.level)
        logger.info("recorder: finished a file", extra={"file": str(path), "lines": kept})


def book_plans(exchange: str, ws_url: str, symbols: list[str], kraken_depth: int = 1000) -> list[ConnectionPlan]:
    """The book connections ingest's books channel opens (:mod:`books.stream`, :mod:`books.socket_stream`):
    Binance's ``@depth@100ms``, Coinbase's ``level2`` (with ``heartbeats``), Kraken's ``book`` at ``kraken_depth``."""
    from books.socket_stream import coinbase_plan
    from books.stream import depth_plans

    if exchange == "binance":
        return depth_plans(ws_url, symbols)
    if exchange == "coinbase":
        return [coinbase_plan(ws_url, symbols)]
    if exchange == "kraken":
        message = {"method": "subscribe", "params": {"channel": "book", "symbol": symbols, "depth": kraken_depth}}
        return [ConnectionPlan(url=ws_url, symbols=tuple(symbols), subscribe=(orjson.dumps(message).decode(),))]
    raise RecorderError(f"{exchange} has no book channel to record")


def record(
    exchange: str,
    symbols: list[str],
    ws_url: str,
    recorder: FrameRecorder,
    stop: threading.Event,
    max_frames: int = 0,
    clock_ns: Callable[[], int] = time.time_ns,
    *,
    channels: tuple[str, ...] = ("trades",),
    snapshot: Callable[[str], Any] | None = None,
) -> None:
    """Record ``exchange``'s ``channels`` for ``symbols`` (the connections ingest would open: trades, and books)
    until ``stop`` is set or ``max_frames`` data frames were written; the recorder is closed on return.

    Binance's depth needs a REST snapshot to be replayed from the start: ``snapshot(symbol)`` (``/api/v3/depth``)
    is written as a ``<recv ns> {"lastUpdateId", ...}`` line after the first depth event of each symbol, the line
    ``simulate_exchange --replay`` serves its REST book from (a recording without one is replayed from an empty
    book, said in its log). Coinbase's and Kraken's snapshots come on the socket and are recorded with it."""
    adapter = get(exchange).adapter(ws_url)
    subscribed = adapter.normalise_symbols(symbols)
    plans = [(plan, False) for plan in adapter.plans(subscribed)] if "trades" in channels else []
    if "books" in channels:
        book_symbols = [adapter.spelling.record(s) for s in subscribed] if exchange != "binance" else subscribed
        plans += [(plan, True) for plan in book_plans(exchange, ws_url, book_symbols)]
    snapshotted: set[str] = set()

    def write(raw: bytes | str) -> None:
        # The client stamps milliseconds; the recording keeps nanoseconds, taken as close to the read as possible.
        recorder.write(raw if isinstance(raw, bytes) else raw.encode(), clock_ns())
        if max_frames and recorder.frames >= max_frames:
            stop.set()

    def on_frame(raw: bytes, _received_ms: int) -> bool:
        write(raw)
        return False

    def on_depth_frame(raw: bytes, _received_ms: int) -> bool:
        write(raw)
        if snapshot is not None and exchange == "binance" and b'"depthUpdate"' in raw:
            symbol = str(orjson.loads(raw).get("data", {}).get("s", ""))
            if symbol and symbol not in snapshotted:
                snapshotted.add(symbol)
                try:
                    write(orjson.dumps(snapshot(symbol)))
                except Exception as exc:  # noqa: BLE001 - the stream goes on; the replay then starts from empty
                    logger.warning("recorder: no depth snapshot", extra={"symbol": symbol, "error": str(exc)})
        return False

    clients = [WsClient(plan, on_depth_frame if books else on_frame, stop) for plan, books in plans]
    threads = [threading.Thread(target=c.run, name=f"record-{i}", daemon=True) for i, c in enumerate(clients)]
    try:
        for thread in threads:
            thread.start()
        while not stop.wait(1.0):
            recorder.flush()  # a quiet market still gets its last frames onto disk within a second
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        recorder.close()
