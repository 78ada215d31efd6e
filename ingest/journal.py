"""The spill journal: an append-only file log on local disk for the records ingest cannot hold in memory.

While Kafka is away and the memory bound (``INGEST_BUFFER_BYTES``) is reached, :class:`ingest.producer.TradeProducer`
writes records here instead of growing; when Kafka is back it replays them in order, before newer ones, and
removes each segment only once Kafka acknowledged every record read from it.

On disk: segment files ``<number>.seg`` (16 digits, in write order) in one directory, each a run of frames::

    payload length (4 bytes, big-endian) | CRC-32 of the payload (4 bytes) | payload
    payload = kind (1 byte: 0 trade, 1 dead letter) | receipt time (8 bytes, ms) | key length (2 bytes) | key | value

Appends are buffered and written with one ``fsync`` per batch (:meth:`Journal.sync`: when 1 MiB is pending, and
every few tens of milliseconds from the producer's pump). A frame cut short or failing its checksum ends its
segment on reading: the torn tail a crash leaves is skipped and counted, never replayed half. Each process writes
to a new segment, so nothing is ever appended after a torn tail. A lock file keeps a second process out.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import struct
import threading
import zlib
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

#: record kinds
TRADE = 0
DEAD_LETTER = 1
#: kind, key, value, receipt time (epoch ms)
JournalRecord = tuple[int, bytes, bytes, int]

_HEAD = struct.Struct(">II")  # payload length, CRC-32
_META = struct.Struct(">BqH")  # kind, received_at, key length
SEGMENT_BYTES = 8 * 1024 * 1024
SYNC_BYTES = 1024 * 1024
LOCK_NAME = "LOCK"


class JournalError(RuntimeError):
    """The journal directory cannot be used (locked by another process, not writable); the message names it."""


def encode(records: list[JournalRecord]) -> bytes:
    """The frames of ``records``, in order."""
    out = bytearray()
    for kind, key, value, received_at in records:
        payload = _META.pack(kind, received_at, len(key)) + key + value
        out += _HEAD.pack(len(payload), zlib.crc32(payload))
        out += payload
    return bytes(out)


def decode(data: bytes | memoryview) -> tuple[list[JournalRecord], int, bool]:
    """The whole frames at the start of ``data``: (records, bytes they take, whether a bad frame stopped it).

    A frame running past the end of ``data`` is not bad (it may be read whole later); a checksum or length that
    does not hold is.
    """
    view = memoryview(data)
    records: list[JournalRecord] = []
    pos, end = 0, len(view)
    while end - pos >= _HEAD.size:
        length, crc = _HEAD.unpack_from(view, pos)
        start = pos + _HEAD.size
        if start + length > end:
            return records, pos, False
        payload = view[start : start + length]
        if length < _META.size or zlib.crc32(payload) != crc:
            return records, pos, True
        kind, received_at, key_len = _META.unpack_from(payload)
        if _META.size + key_len > length:
            return records, pos, True
        key = bytes(payload[_META.size : _META.size + key_len])
        records.append((kind, key, bytes(payload[_META.size + key_len :]), received_at))
        pos = start + length
    return records, pos, False


class Journal:
    """One process's journal directory: buffered appends, fsync per batch, an in-order read cursor, removal.

    Thread-safe. ``max_bytes`` bounds what it holds (segments on disk not yet removed, plus what waits to be
    written): :meth:`append` refuses beyond it.
    """

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int = SEGMENT_BYTES,
        sync_bytes: int = SYNC_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.sync_bytes = sync_bytes
        self._lock = threading.RLock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_file: IO[bytes] | None = (self.directory / LOCK_NAME).open("ab")
        except OSError as exc:
            raise JournalError(f"{self.directory}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            raise JournalError(f"{self.directory} is in use by another process") from None
        #: segment number -> bytes written (synced); the write segment is the last, when open
        self._sizes: dict[int, int] = {}
        for path in sorted(self.directory.glob("*.seg")):
            with contextlib.suppress(ValueError):
                self._sizes[int(path.stem)] = path.stat().st_size
        #: left by an earlier process (replayed first)
        self.leftover_segments = len(self._sizes)
        self._next = max(self._sizes, default=0) + 1
        self._write: tuple[int, IO[bytes]] | None = None  # a new segment per process: never after a torn tail
        self._pending = bytearray()
        self._cursor: tuple[int, int] | None = (min(self._sizes), 0) if self._sizes else None
        self._finished: list[int] = []  # read to the end and closed: the caller removes them once acknowledged
        self.torn_bytes = 0  # skipped: a torn tail or a bad frame

    # ------------------------------------------------------------------------------------------- size
    @property
    def bytes(self) -> int:
        """What the journal holds: every segment not removed yet, plus what waits to be written."""
        with self._lock:
            return sum(self._sizes.values()) + len(self._pending)

    @property
    def unread(self) -> bool:
        """Whether records wait to be read (written or pending)."""
        with self._lock:
            if self._pending:
                return True
            if self._cursor is None:
                return False
            number, offset = self._cursor
            return offset < self._sizes.get(number, 0) or any(n > number for n in self._sizes)

    # ------------------------------------------------------------------------------------------- writing
    def append(self, records: list[JournalRecord]) -> bool:
        """Add ``records`` after everything before; False (nothing added) when that would pass ``max_bytes``."""
        data = encode(records)
        with self._lock:
            if self.bytes + len(data) > self.max_bytes:
                return False
            self._pending += data
            if len(self._pending) >= self.sync_bytes:
                self.sync()
        return True

    def sync(self) -> int:
        """Write what is pending and ``fsync`` it (one call per batch); returns the bytes written."""
        with self._lock:
            if not self._pending:
                return 0
            if self._write is None:
                number = self._next
                self._next += 1
                handle: IO[bytes] = (self.directory / f"{number:016d}.seg").open("ab")
                self._write = (number, handle)
                self._sizes[number] = 0
                if self._cursor is None:
                    self._cursor = (number, 0)
                fsync_dir(self.directory)  # the new file's name survives a crash too
            number, handle = self._write
            data = bytes(self._pending)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            self._pending.clear()
            self._sizes[number] += len(data)
            if self._sizes[number] >= self.segment_bytes:
                self.rotate()
            return len(data)

    def rotate(self) -> None:
        """Close the write segment (written first): the next append starts a new one."""
        with self._lock:
            if self._pending:
                self.sync()
            if self._write is not None:
                self._write[1].close()
                self._write = None
            self._advance()

    # ------------------------------------------------------------------------------------------- reading
    def read(self, max_bytes: int, max_records: int | None = None) -> list[JournalRecord]:
        """The next records in write order (written ones only: :meth:`sync` first), about ``max_bytes`` of frames
        at most (always at least one when any waits)."""
        out: list[JournalRecord] = []
        budget = max_bytes
        with self._lock:
            while self._cursor is not None and budget > 0 and (max_records is None or len(out) < max_records):
                number, offset = self._cursor
                size = self._sizes.get(number, 0)
                if offset >= size:
                    if not self._advance():
                        break
                    continue
                path = self.directory / f"{number:016d}.seg"
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read(min(size - offset, max(budget, _HEAD.size)))
                    records, used, bad = decode(data)
                    if not records and not bad and len(data) >= _HEAD.size:
                        # one frame larger than the budget: read it whole
                        length = _HEAD.unpack_from(data)[0]
                        if offset + _HEAD.size + length <= size:
                            handle.seek(offset)
                            records, used, bad = decode(handle.read(_HEAD.size + length))
                if max_records is not None and len(out) + len(records) > max_records:
                    keep = max_records - len(out)
                    used = len(encode(records[:keep]))
                    records, bad = records[:keep], False
                out.extend(records)
                budget -= used
                offset += used
                self._cursor = (number, offset)
                writing = self._write is not None and self._write[0] == number
                if bad or (not records and not writing and offset < size):
                    # a checksum that fails, or a frame cut short in a segment nobody writes any more: the tail a
                    # crash tore (or damage). What follows it in this segment cannot be framed: skip it.
                    skipped = size - offset
                    self.torn_bytes += skipped
                    logger.warning(
                        "journal: a torn or damaged record skipped",
                        extra={"segment": path.name, "offset": offset, "bytes": skipped},
                    )
                    self._cursor = (number, size)
                    if not self._advance():
                        break
        return out

    def _advance(self) -> bool:
        """Move the cursor past a segment read to its end and closed; True when it moved."""
        if self._cursor is None:
            return False
        number, offset = self._cursor
        writing = self._write is not None and self._write[0] == number
        if writing or offset < self._sizes.get(number, 0):
            return False
        later = sorted(n for n in self._sizes if n > number)
        if number in self._sizes and number not in self._finished:
            self._finished.append(number)
        self._cursor = (later[0], 0) if later else None
        return bool(later)

    def take_finished(self) -> list[int]:
        """Segments read to the end since the last call (remove them with :meth:`remove` once acknowledged)."""
        with self._lock:
            self._advance()
            done, self._finished = self._finished, []
            return done

    def remove(self, segments: list[int]) -> None:
        """Delete ``segments`` (read, and acknowledged by Kafka)."""
        with self._lock:
            for number in segments:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{number:016d}.seg").unlink()
                self._sizes.pop(number, None)
            fsync_dir(self.directory)

    def close(self) -> None:
        """Write what is pending, close the files and the lock (what is left stays for the next start)."""
        with self._lock:
            with contextlib.suppress(OSError):
                self.sync()
            if self._write is not None:
                self._write[1].close()
                self._write = None
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock
                self._lock_file = None


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` durable: a file created, renamed or removed survives a crash once this
    returns."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def journal_name(exchange: str, symbols: list[str]) -> str:
    """The folder of one ingest process's journal: its exchange and symbol set (processes that split an exchange's
    symbols each have their own; a restart with the same symbols finds its journal)."""
    joined = "_".join(sorted(re.sub(r"[^a-z0-9]+", "-", s.lower()) for s in symbols))
    if len(joined) > 80:
        joined = hashlib.sha256(joined.encode()).hexdigest()[:16]
    return f"{exchange}-{joined}"


def open_journal(exchange: str, symbols: list[str]) -> Journal | None:
    """The journal of the ingest process of ``exchange`` and ``symbols`` (``INGEST_JOURNAL_DIR/<exchange>-<symbols>``),
    or None when ``INGEST_JOURNAL_BYTES`` is 0; :class:`JournalError` names the setting when it cannot be used."""
    from django.conf import settings

    if not settings.INGEST_JOURNAL_BYTES:
        return None
    root = Path(settings.INGEST_JOURNAL_DIR)
    name = journal_name(exchange, symbols)
    try:
        journal = Journal(root / name, settings.INGEST_JOURNAL_BYTES)
    except JournalError as exc:
        raise JournalError(f"INGEST_JOURNAL_DIR: {exc}") from None
    # A journal of another symbol set of this exchange is replayed only by a process started with those symbols.
    for other in sorted(root.glob(f"{exchange}-*/*.seg")):
        if other.parent.name != name:
            logger.warning(
                "journal of another symbol set not replayed: start ingest with its symbols to replay it",
                extra={"journal": str(other.parent)},
            )
            break
    return journal
