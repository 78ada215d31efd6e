"""One history import: which files (archive or local), fetched and verified, stored in time order, summarised."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from django.db import DatabaseError

from analytics import partitions
from analytics.models import INTERVAL_SECONDS
from cryptoproject.timeutil import us_to_datetime
from history import archive, importer
from history.parse import KINDS, FileName, ParseError, parse_name

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """An import request that cannot run; the message names the option."""


@dataclass(frozen=True)
class ImportRequest:
    """What to import. Archive mode needs ``symbol``, ``start`` and (for klines) ``interval``; ``paths`` switch to
    local files, whose names give symbol, kind and interval unless set here. ``source`` keys the download cache
    (default ``base_url``; ``mirror:<folder>`` for an in-process mirror, whose URL changes every run)."""

    symbol: str | None = None
    kind: str | None = None
    interval: str | None = None
    start: date | None = None
    end: date | None = None
    paths: tuple[Path, ...] = ()
    base_url: str = "https://data.binance.vision"
    cache_dir: Path = Path(".cache/history")
    concurrency: int = 4
    indicators: bool = True
    exchange: str = importer.EXCHANGE
    source: str | None = None


@dataclass
class ImportSummary:
    """The end-of-run report."""

    files: int = 0
    imported: int = 0
    cached: int = 0
    rows: int = 0
    written: int = 0
    empty: int = 0  # klines without a trade: no candle (as on the live path)
    rejected_rows: int = 0
    gaps: importer.Gaps = field(default_factory=importer.Gaps)
    checksum_failures: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<file>: why", files left out on purpose (another market)
    indicators: int = 0
    seconds: float = 0.0  # the import (downloads, storage, rollups), without the indicators
    indicator_seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        """Rows read per second of the import (without the indicators); 0.0 for an instant one."""
        return self.rows / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        """The summary, one fact a line."""
        out = [
            f"files: {self.files} planned, {self.imported} imported ({self.cached} from the cache), "
            f"{len(self.missing)} missing, {len(self.checksum_failures)} checksum failures, {len(self.errors)} errors",
            f"rows: {self.rows} read, {self.written} written ({self.rows - self.written - self.empty} unchanged, "
            f"{self.empty} without a trade not stored), "
            f"{self.rejected_rows} rejected, {self.rows_per_second:,.0f} rows/s",
            f"gaps: {self.gaps.count} ({self.gaps.missing} missing), reported, not filled",
        ]
        out += [f"  gap {g}" for g in self.gaps.examples]
        if (unlisted := self.gaps.count - len(self.gaps.examples)) > 0:
            more = f"{unlisted} more gap{'s' if unlisted > 1 else ''}"
            out.append(f"  ... and {more}, not listed (the first {len(self.gaps.examples)} are)")
        out += [f"  missing {m}" for m in self.missing]
        out += [f"  refused {c}" for c in self.checksum_failures]
        out += [f"  error {e}" for e in self.errors]
        out += [f"  skipped {s}" for s in self.skipped]
        if self.unverified:
            out.append(f"unverified (no .CHECKSUM beside them): {', '.join(self.unverified)}")
        if self.files and self.shortfall() is None and not self.written:
            out.append(f"nothing new: all {self.rows} rows were already stored")
        if self.indicators:
            out.append(f"indicators: {self.indicators} rows recomputed in {self.indicator_seconds:.1f} s")
        return out

    def shortfall(self) -> str | None:
        """Why the run did not import everything asked for (the command then exits non-zero), or None when it did.

        Every planned file stored with every row of it is a success, even when nothing was new (a re-run);
        nothing to import, missing, refused or failed files and rejected rows are not. Skipped files (another
        market) were not asked for and do not count, but a run that skipped everything imported nothing."""
        if not self.files:
            skipped = f" ({len(self.skipped)} skipped, listed above)" if self.skipped else ""
            return f"nothing was imported: no file matched the request{skipped}"
        problems = []
        if self.missing:
            problems.append(f"{len(self.missing)} missing from the archive (404)")
        if self.checksum_failures:
            n = len(self.checksum_failures)
            problems.append(f"{n} refused by {'its' if n == 1 else 'their'} checksum")
        if self.errors:
            problems.append(f"{len(self.errors)} failed (errors above)")
        if self.rejected_rows:
            problems.append(f"{self.rejected_rows} row{'s' if self.rejected_rows != 1 else ''} rejected")
        if not problems:
            return None
        head = "not everything was imported" if self.imported else "nothing was imported"
        files = f"{self.imported} of {self.files} file{'s' if self.files != 1 else ''}"
        return f"{head} ({files}): {', '.join(problems)}"


Progress = Callable[[str, int], None]
"""Called after each file: its name and the rows it held."""


@dataclass(frozen=True)
class _Source:
    """One file to store: where it is (or why not) and what it holds; ``skip`` says why it is left out on purpose."""

    label: str
    name: FileName
    path: Path | None
    error: Exception | None = None
    cached: bool = False
    skip: str | None = None


# The archive's market folders: data/spot/..., data/futures/um/..., data/futures/cm/..., data/option/... (each then
# daily/ or monthly/). Only spot is imported: futures klines of a symbol are another series (other prices, Coin-M
# volumes in contracts), and stored as binance candles they would mix into the spot series.
_PERIODS = ("daily", "monthly")


def market_of(path: Path) -> str | None:
    """The archive market a file's folders name (``spot``, ``futures/um``, ``futures/cm``, ``option``), or None
    when it is not in the archive's layout."""
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] in _PERIODS:
            if parts[i - 1] in ("um", "cm") and i >= 2 and parts[i - 2] == "futures":
                return f"futures/{parts[i - 1]}"
            if parts[i - 1] in ("spot", "option"):
                return parts[i - 1]
    return None


def _not_spot(path: Path, name: FileName) -> str | None:
    """Why ``path`` is not a spot file (the layout says another market, or the symbol is a futures contract's:
    ``BTCUSD_PERP``, ``BTCUSDT_230331``; spot symbols never hold ``_``), or None."""
    market = market_of(path)
    if market not in (None, "spot"):
        return f"{market}, not the spot market (only spot is imported)"
    if "_" in name.symbol:
        return f"{name.symbol} is a futures contract, not a spot symbol"
    return None


def local_files(request: ImportRequest) -> list[_Source]:
    """The archive files under ``request.paths`` (zips and CSVs named as the archive names them), in time order.

    A file given by itself takes ``--symbol``/``--kind``/``--interval`` over what its name says (and needs them
    when its name is not an archive name); the files of a folder are filtered by them and by ``start..end``.
    A file of another market than spot (its folders in the archive's layout say so, or its symbol is a futures
    contract's) comes back with ``skip`` saying why, for the summary to list.
    """
    sources: list[_Source] = []
    for p in request.paths:
        if p.is_file():
            sources.append(_single_file(request, p))
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.suffix in (".zip", ".csv") and f.is_file() and (source := _folder_file(request, f)):
                    sources.append(source)
        else:
            raise RequestError(f"--path {p}: no such file or folder")
    sources.sort(key=lambda s: (s.name.symbol, s.name.kind, s.name.interval or "", s.name.first_day))
    return [
        _Source(s.label, s.name, None, skip=f"{s.path}: {why}")
        if s.path is not None and (why := _not_spot(s.path, s.name))
        else s
        for s in sources
    ]


def _single_file(request: ImportRequest, path: Path) -> _Source:
    try:
        name = parse_name(path.name)
    except ParseError:
        if not (request.symbol and request.kind and (request.interval or request.kind != "klines")):
            raise RequestError(
                f"--path {path}: not named as the archive names its files; give --symbol, --kind (and --interval)"
            ) from None
        name = FileName(request.symbol.upper(), request.kind, request.interval, date.min, False)
    name = FileName(
        (request.symbol or name.symbol).upper(),
        request.kind or name.kind,
        (request.interval or name.interval) if (request.kind or name.kind) == "klines" else None,
        name.first_day,
        name.monthly,
    )
    return _Source(path.name, name, path)


def _folder_file(request: ImportRequest, path: Path) -> _Source | None:
    try:
        name = parse_name(path.name)
    except ParseError:
        logger.info("history: skipping a file not named as the archive names them", extra={"file": str(path)})
        return None
    if request.symbol and name.symbol != request.symbol.upper():
        return None
    if (request.kind and name.kind != request.kind) or (request.interval and name.interval != request.interval):
        return None
    if (request.start and name.last_day < request.start) or (request.end and name.first_day > request.end):
        return None
    return _Source(path.name, name, path)


def _verified_local(source: _Source) -> tuple[_Source, bool]:
    """Check a local zip against a ``.CHECKSUM`` beside it, when there is one; ``(source, verified)``."""
    assert source.path is not None
    checksum = source.path.with_name(source.path.name + ".CHECKSUM")
    if not checksum.exists():
        return source, False
    try:
        archive.verify(source.path, archive.read_checksum(checksum.read_text(), source.path.name))
    except (archive.ChecksumMismatchError, archive.DownloadError) as exc:
        return _Source(source.label, source.name, None, exc), True
    return source, True


def archive_files(request: ImportRequest, today: date) -> Iterator[_Source]:
    """Download (or take from the cache) the archive files covering the request, in time order."""
    if not request.symbol:
        raise RequestError("--symbol is needed to import from the archive")
    if request.start is None:
        raise RequestError("--from is needed to import from the archive")
    kind = request.kind or "klines"
    if kind not in KINDS:
        raise RequestError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "klines" and not request.interval:
        raise RequestError("--interval is needed for klines (for example 1h)")
    end = request.end or today - timedelta(days=1)
    try:
        files = archive.plan(request.symbol.upper(), kind, request.interval, request.start, end, today)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    fetched = archive.fetch_all(request.base_url, files, request.cache_dir, request.concurrency, source=request.source)
    for file, outcome in fetched:
        if isinstance(outcome, archive.Fetched):
            yield _Source(file.name, file.file_name(), outcome.path, cached=outcome.cached)
        else:
            yield _Source(file.name, file.file_name(), None, outcome)


def planned_count(request: ImportRequest, today: date) -> int | None:
    """How many files the request covers (for the progress bar), when known up front."""
    if request.paths:
        return len(local_files(request))
    if request.symbol and request.start:
        kind = request.kind or "klines"
        end = request.end or today - timedelta(days=1)
        try:
            return len(archive.plan(request.symbol.upper(), kind, request.interval, request.start, end, today))
        except ValueError:
            return None
    return None


# Klines files of one series are stored together (one transaction, one MERGE) up to this many compressed bytes: 55
# monthly 1h files (~2 MB) make one batch, a 1m or 1s month (~1-2 MB each) about one batch per few files.
KLINE_BATCH_BYTES = 4 << 20


def run_import(request: ImportRequest, progress: Progress | None = None, today: date | None = None) -> ImportSummary:
    """Import what ``request`` asks for; every problem with one file is reported in the summary, never fatal."""
    today = today or datetime.now(UTC).date()
    if request.concurrency < 1:
        raise RequestError(f"concurrency must be >= 1, got {request.concurrency}")
    if request.interval and request.interval not in INTERVAL_SECONDS:
        # The archive has more (1s, 3m, 2h, ...): files of those could only fail, one by one, or 404 as "missing".
        raise RequestError(
            f"--interval {request.interval}: not an interval the database stores ({', '.join(INTERVAL_SECONDS)})"
        )
    run = _Run(request, progress)
    if request.paths:
        sources: Iterator[_Source] = iter(local_files(request))
    else:
        sources = archive_files(request, today)
    for source in sources:
        if source.skip is not None:
            run.summary.skipped.append(source.skip)
            if progress is not None:
                progress(source.label, 0)
            continue
        run.summary.files += 1
        if request.paths and source.path is not None:
            # Downloads are verified by archive.fetch; local files when a .CHECKSUM sits beside them.
            source, verified = _verified_local(source)
            if not verified:
                run.summary.unverified.append(source.label)
        run.add(source)
    return run.finish()


class _Run:
    """The state of one import: its summary, each series' gap tracker, what changed (for rollups and indicators),
    and the klines files waiting to be stored as one batch."""

    def __init__(self, request: ImportRequest, progress: Progress | None) -> None:
        self.request = request
        self.progress = progress
        self.summary = ImportSummary()
        self.started = time.perf_counter()
        self.trackers: dict[tuple[str, str, str], importer.SeriesGapFinder] = {}
        self.first_by_series: dict[tuple[str, str], datetime] = {}  # earliest change per (symbol, interval/trades)
        self.spans: dict[tuple[str, str], tuple[datetime, datetime]] = {}  # klines read per (symbol, interval)
        self.pending: list[_Source] = []  # klines files of one series, stored together
        self.pending_bytes = 0

    def _tracker(self, name: FileName) -> importer.SeriesGapFinder:
        key = (name.symbol, name.kind, (name.interval if name.kind == "klines" else name.kind) or "")
        return self.trackers.setdefault(key, importer.SeriesGapFinder(self.summary.gaps))

    def add(self, source: _Source) -> None:
        """Store ``source`` (klines: batched with the files of its series before it), or record why not."""
        if source.error is not None:
            self._failed(source, source.error)
            return
        assert source.path is not None
        name = source.name
        if name.kind != "klines":
            self.flush()
            self._store_trades(source)
            return
        if not name.interval:
            self._failed(source, ParseError(f"{source.label}: no interval (give --interval)"))
            return
        if self.pending and (self.pending[0].name.symbol, self.pending[0].name.interval) != (
            name.symbol,
            name.interval,
        ):
            self.flush()
        self.pending.append(source)
        self.pending_bytes += source.path.stat().st_size
        if self.pending_bytes >= KLINE_BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Store the klines files waiting, as one batch."""
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        if not pending:
            return
        name = pending[0].name
        assert name.interval is not None
        paths = [s.path for s in pending if s.path is not None]
        try:
            batch = importer.import_klines(
                paths, name.symbol, name.interval, self._tracker(name), exchange=self.request.exchange
            )
        except ParseError as exc:  # an interval the database does not store: every file of the batch
            for source in pending:
                self._failed(source, exc)
            return
        results = {r.name: r for r in batch.files}
        for source in pending:
            assert source.path is not None
            result = results.get(source.path.name)
            if result is None:
                self._failed(source, batch.errors.get(source.path.name) or RuntimeError("not stored"))
                continue
            self._done(source, result)
        self.summary.written += batch.written
        self.summary.empty += batch.empty
        if batch.first_us is not None and batch.last_us is not None:
            lo = us_to_datetime(batch.first_us)
            hi = us_to_datetime(batch.last_us)
            span = self.spans.get((name.symbol, name.interval))
            self.spans[(name.symbol, name.interval)] = (min(lo, span[0]), max(hi, span[1])) if span else (lo, hi)
            if batch.first_written_us is not None:
                self._changed((name.symbol, name.interval), us_to_datetime(batch.first_written_us))

    def _store_trades(self, source: _Source) -> None:
        assert source.path is not None
        name = source.name
        try:
            if name.first_day != date.min:
                # The partitions of the file's days first, outside its transaction: made inside it, they would
                # hold the trades table's lock (and the live consumer) until the file is stored.
                start = datetime(name.first_day.year, name.first_day.month, name.first_day.day, tzinfo=UTC)
                end = datetime(name.last_day.year, name.last_day.month, name.last_day.day, tzinfo=UTC)
                partitions.ensure_partitions(start, end + timedelta(days=1) - timedelta(microseconds=1))
            result = importer.import_trades(
                source.path, name.symbol, name.kind, self._tracker(name), exchange=self.request.exchange
            )
        except (ParseError, DatabaseError, OSError) as exc:  # a value out of range, an I/O error: this file only
            self._failed(source, exc)
            return
        self._done(source, result)
        self.summary.written += result.written
        if result.first_us is not None and result.written:
            self._changed((name.symbol, "trades"), us_to_datetime(result.first_us))

    def _changed(self, series: tuple[str, str], first: datetime) -> None:
        if series not in self.first_by_series or first < self.first_by_series[series]:
            self.first_by_series[series] = first

    def _done(self, source: _Source, result: importer.FileResult) -> None:
        summary = self.summary
        summary.imported += 1
        summary.cached += source.cached
        summary.rows += result.rows
        summary.rejected_rows += result.rejected
        if self.progress is not None:
            self.progress(source.label, result.rows)

    def _failed(self, source: _Source, error: Exception) -> None:
        summary = self.summary
        if isinstance(error, archive.MissingFileError):
            summary.missing.append(str(error))
        elif isinstance(error, archive.ChecksumMismatchError):
            summary.checksum_failures.append(str(error))
        elif isinstance(error, ParseError) and str(error).startswith(source.label):
            summary.errors.append(str(error))
        else:
            summary.errors.append(f"{source.label}: {error}")
        logger.warning("history: file not imported", extra={"file": source.label, "reason": str(error)})
        if self.progress is not None:
            self.progress(source.label, 0)

    def finish(self) -> ImportSummary:
        """Store what waits, roll the larger intervals up, then recompute the indicators of what changed."""
        self.flush()
        request, summary = self.request, self.summary
        # Indicators follow changed candles only, from the earliest change of each series: a re-run that changed
        # nothing recomputes nothing, and a 1m import under imported 1h klines leaves the 1h indicators alone.
        changed: dict[tuple[str, str], datetime] = {}
        for (symbol, series), start in self.first_by_series.items():
            for interval in importer.candle_logic.ALL_INTERVALS if series == "trades" else [series]:
                changed[(symbol, interval)] = start
        for (symbol, interval), (first, last) in self.spans.items():
            for target, start in importer.rollup_range(request.exchange, symbol, interval, first, last).items():
                key = (symbol, target)
                changed[key] = min(start, changed.get(key, start))
        summary.seconds = time.perf_counter() - self.started
        if request.indicators:
            for (symbol, interval), start in changed.items():
                summary.indicators += importer.refresh_indicators(request.exchange, symbol, [interval], start)
            summary.indicator_seconds = time.perf_counter() - self.started - summary.seconds
        return summary
