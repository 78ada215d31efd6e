"""data.binance.vision: its URL layout, which files cover a date range, and verified, resumable downloads.

Layout: ``{base}/data/spot/{monthly|daily}/klines/SYMBOL/INTERVAL/SYMBOL-INTERVAL-YYYY-MM[-DD].zip`` (``trades`` and
``aggTrades`` have no interval folder), each beside ``<name>.zip.CHECKSUM`` holding ``<sha256>  <name>``.

Downloads go into a cache folder of their source (:func:`cache_folder`: one per archive URL or mirror folder), in
the same layout. A file is first written to ``<name>.zip.part``; an interrupted download resumes from the part's
size with an HTTP ``Range`` request, and only a file whose SHA-256 matches its CHECKSUM is renamed to its final
name. A mismatch deletes the part (the next run starts over) and refuses the file. The cache is keyed by source
and checksum: every run reads the file's ``.CHECKSUM`` from the source, and a cached copy is used only when it
hashes to that, so a file fetched from another source, or one the source has since republished, is never taken
for the source's (and nothing is "verified" without the source).

HTTP: urllib3 (a dependency of the stack already, pinned in requirements/base.txt): a thread-safe connection pool
with retries, which the bounded thread pool of :func:`fetch_all` shares.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import urllib3

from history.parse import KINDS, FileName

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16


class MissingFileError(Exception):
    """The archive has no such file (HTTP 404): reported, and the other files are still imported."""


class ChecksumMismatchError(Exception):
    """A file whose SHA-256 differs from its CHECKSUM: refused, nothing of it stored."""


class DownloadError(Exception):
    """Any other failure to fetch a file (HTTP error status, unreadable CHECKSUM)."""


@dataclass(frozen=True)
class ArchiveFile:
    """One file of the archive."""

    symbol: str
    kind: str
    interval: str | None
    day: date
    monthly: bool

    @property
    def name(self) -> str:
        """The archive's file name, e.g. ``BTCUSDT-1h-2024-01-15.zip`` or ``BTCUSDT-trades-2024-01.zip``."""
        period = self.day.strftime("%Y-%m") if self.monthly else self.day.isoformat()
        middle = self.interval if self.kind == "klines" else self.kind
        return f"{self.symbol}-{middle}-{period}.zip"

    @property
    def path(self) -> str:
        """The path under the archive's root (also the cache's)."""
        folder = f"data/spot/{'monthly' if self.monthly else 'daily'}/{self.kind}/{self.symbol}"
        if self.kind == "klines":
            folder += f"/{self.interval}"
        return f"{folder}/{self.name}"

    def file_name(self) -> FileName:
        """What the name says, as :func:`history.parse.parse_name` would read it."""
        return FileName(self.symbol, self.kind, self.interval, self.day, self.monthly)


def _month_end(day: date) -> date:
    nxt = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def plan(symbol: str, kind: str, interval: str | None, start: date, end: date, today: date) -> list[ArchiveFile]:
    """The files covering ``start..end`` (inclusive), in time order: a monthly file for every whole month that
    has ended before ``today`` (the archive publishes monthly files after the month), daily files for the rest."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "klines" and not interval:
        raise ValueError("klines need an interval")
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    files: list[ArchiveFile] = []
    day = start
    while day <= end:
        month_end = _month_end(day)
        if day.day == 1 and month_end <= end and month_end < today:
            files.append(ArchiveFile(symbol, kind, interval if kind == "klines" else None, day, True))
            day = month_end + timedelta(days=1)
            continue
        files.append(ArchiveFile(symbol, kind, interval if kind == "klines" else None, day, False))
        day += timedelta(days=1)
    return files


def make_pool(concurrency: int) -> urllib3.PoolManager:
    """One connection pool for all download threads (connection errors and 5xx retried with backoff)."""
    retries = urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504), redirect=3)
    return urllib3.PoolManager(
        num_pools=4, maxsize=max(concurrency, 1), retries=retries, timeout=urllib3.Timeout(connect=10, read=60)
    )


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checksum(text: str, name: str) -> str:
    """The digest of a CHECKSUM file's text (``<sha256>  <name>``)."""
    parts = text.split()
    if not parts or len(parts[0]) != 64 or any(c not in "0123456789abcdefABCDEF" for c in parts[0]):
        raise DownloadError(f"{name}.CHECKSUM: not '<sha256>  <name>': {text[:100]!r}")
    if len(parts) > 1 and parts[1] != name:
        raise DownloadError(f"{name}.CHECKSUM names another file: {parts[1]!r}")
    return parts[0].lower()


def verify(path: Path, expected: str, name: str | None = None) -> None:
    """Raise :class:`ChecksumMismatchError` unless ``path`` hashes to ``expected``; the error names the file as
    ``name`` (the archive's name of a download still in its ``.part``), else by its own name."""
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumMismatchError(f"{name or path.name}: checksum mismatch (CHECKSUM {expected}, file {actual})")


def cache_folder(source: str) -> str:
    """The cache's folder for ``source`` (an archive URL, or ``mirror:<folder>``): readable, and distinct for every
    source (a digest of the whole source ends it), so two sources never share a cached file."""
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", source).strip("_")[:60]
    return f"{readable}-{hashlib.sha256(source.encode()).hexdigest()[:12]}"


def _get_text(http: urllib3.PoolManager, url: str, name: str) -> str:
    response = http.request("GET", url)
    if response.status == 404:
        raise MissingFileError(f"{name}: not in the archive (404 {url})")
    if response.status != 200:
        raise DownloadError(f"{name}: HTTP {response.status} for {url}")
    return response.data.decode("utf-8", errors="replace")


def _download(http: urllib3.PoolManager, url: str, part: Path, name: str) -> None:
    """Fetch ``url`` into ``part``, resuming from the part's current size."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    response = http.request("GET", url, headers=headers, preload_content=False)
    try:
        if response.status == 404:
            raise MissingFileError(f"{name}: not in the archive (404 {url})")
        if response.status == 416 and have:
            return  # the part already holds the whole file: the checksum decides
        if response.status == 206 and have:
            mode = "ab"
        elif response.status == 200:
            mode = "wb"  # no range support (or nothing to resume): start over
        else:
            raise DownloadError(f"{name}: HTTP {response.status} for {url}")
        with part.open(mode) as out:
            for chunk in response.stream(_CHUNK):
                out.write(chunk)
    finally:
        response.release_conn()


@dataclass(frozen=True)
class Fetched:
    """A verified file in the cache."""

    file: ArchiveFile
    path: Path
    cached: bool


def fetch(http: urllib3.PoolManager, base_url: str, file: ArchiveFile, cache_dir: Path) -> Fetched:
    """The verified local copy of ``file``: the source's ``.CHECKSUM`` is read first, then the cached copy is used
    when it hashes to it, else the file is downloaded (resumably) and verified. ``cache_dir`` is this source's own
    folder (:func:`fetch_all` picks it).

    Raises :class:`MissingFileError`, :class:`ChecksumMismatchError` or :class:`DownloadError`.
    """
    target = cache_dir / file.path
    checksum_file = target.with_name(target.name + ".CHECKSUM")
    url = f"{base_url.rstrip('/')}/{file.path}"
    # Always from the source, even for a cached file: a copy is the source's file only if it hashes to the
    # source's CHECKSUM of today (a cache entry of another source or an older publication never is).
    checksum_text = _get_text(http, url + ".CHECKSUM", file.name)
    expected = read_checksum(checksum_text, file.name)
    if target.exists():
        if sha256_of(target) == expected:
            if not checksum_file.exists() or checksum_file.read_text() != checksum_text:
                checksum_file.write_text(checksum_text)
            return Fetched(file, target, cached=True)
        target.unlink()  # damaged, or not the file the source publishes now: fetch it again
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    _download(http, url, part, file.name)
    try:
        verify(part, expected, file.name)
    except ChecksumMismatchError:
        part.unlink()  # never resume from bytes that do not hash right
        raise
    checksum_file.write_text(checksum_text)
    part.replace(target)
    return Fetched(file, target, cached=False)


Outcome = Fetched | Exception


def fetch_all(
    base_url: str,
    files: list[ArchiveFile],
    cache_dir: Path,
    concurrency: int,
    fetcher: Callable[[urllib3.PoolManager, str, ArchiveFile, Path], Fetched] = fetch,
    source: str | None = None,
) -> Iterator[tuple[ArchiveFile, Outcome]]:
    """Fetch ``files`` with at most ``concurrency`` downloads at a time; yield ``(file, Fetched or the error)``
    in the order of ``files`` (so the importer stores in time order while later files download).

    The files are cached under ``cache_dir/<cache_folder(source)>``; ``source`` names where they come from
    (default ``base_url``; an in-process mirror passes its folder, as its URL changes from run to run)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    http = make_pool(concurrency)
    cache_dir = cache_dir / cache_folder(source or base_url.rstrip("/"))
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="history-download") as pool:
        futures: list[Future[Fetched]] = [pool.submit(fetcher, http, base_url, f, cache_dir) for f in files]
        try:
            for file, future in zip(files, futures, strict=True):
                try:
                    yield file, future.result()
                except (
                    MissingFileError,
                    ChecksumMismatchError,
                    DownloadError,
                    OSError,
                    urllib3.exceptions.HTTPError,
                ) as exc:
                    yield file, exc
        finally:
            for future in futures:
                future.cancel()
