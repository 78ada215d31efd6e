"""``manage.py import_history``: Binance's public archive (or local archive files) into candles and trades.

Thin: options to an :class:`history.run.ImportRequest`, a progress bar, the summary. See ``history/``.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm  # type: ignore[import-untyped]  # no types-tqdm pinned

from history.mirror import MirrorServer, start_in_thread
from history.parse import KINDS
from history.run import ImportRequest, RequestError, planned_count, run_import


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"not a date (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    """Import history; files refused by their checksum or failing are reported and end it non-zero."""

    help = "Import klines, trades or aggTrades from data.binance.vision (checksum-verified) or local archive files."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the range (symbol, kind, interval, days) or local ``--path`` files, the source and the cache."""
        parser.add_argument("--symbol", help="BTCUSDT (local files: taken from the name unless given)")
        parser.add_argument("--kind", choices=KINDS, help="default klines (local files: from the name)")
        parser.add_argument("--interval", help="kline interval: 1m, 5m, 15m, 1h, 4h or 1d (those stored)")
        parser.add_argument("--from", dest="start", help="first UTC day, YYYY-MM-DD (inclusive)")
        parser.add_argument("--to", dest="end", help="last UTC day, YYYY-MM-DD (inclusive; default yesterday)")
        parser.add_argument(
            "--path",
            nargs="+",
            metavar="FILE_OR_DIR",
            help="local zips/CSVs named as the archive's; spot only (futures/ folders are skipped and listed)",
        )
        parser.add_argument("--base-url", help="archive root URL (default BINANCE_DATA_URL)")
        parser.add_argument(
            "--mirror", metavar="DIR", help="serve DIR (the archive's layout) on 127.0.0.1 and import from it over HTTP"
        )
        parser.add_argument("--cache-dir", help="download cache (default HISTORY_CACHE_DIR)")
        parser.add_argument("--concurrency", type=int, help="downloads at once (default HISTORY_DOWNLOAD_CONCURRENCY)")
        parser.add_argument("--no-indicators", action="store_true", help="skip recomputing the stored indicators")

    def handle(self, *args: Any, **options: Any) -> None:
        """Import with a progress bar and print the summary; bad requests, refused files, errors: CommandError."""
        mirror: MirrorServer | None = None
        base_url = options["base_url"] or settings.BINANCE_DATA_URL
        source = None
        if options["mirror"]:
            try:
                mirror = start_in_thread(Path(options["mirror"]))
            except (FileNotFoundError, OSError) as exc:
                raise CommandError(f"--mirror: {exc}") from None
            base_url = mirror.url
            source = f"mirror:{mirror.root}"  # the cache's key: the folder, not this run's port
            self.stdout.write(f"archive mirror of {options['mirror']} on {base_url}")
        request = ImportRequest(
            symbol=options["symbol"],
            kind=options["kind"],
            interval=options["interval"],
            start=_date(options["start"]) if options["start"] else None,
            end=_date(options["end"]) if options["end"] else None,
            paths=tuple(Path(p) for p in options["path"] or ()),
            base_url=base_url,
            cache_dir=Path(options["cache_dir"] or settings.HISTORY_CACHE_DIR),
            concurrency=options["concurrency"] or settings.HISTORY_DOWNLOAD_CONCURRENCY,
            indicators=not options["no_indicators"],
            source=source,
        )
        today = datetime.now(UTC).date()
        try:
            total = planned_count(request, today)
            with tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True, mininterval=0.2) as bar:
                rows = 0

                def progress(name: str, count: int) -> None:
                    nonlocal rows
                    rows += count
                    elapsed = bar.format_dict["elapsed"] or 1e-9
                    bar.set_postfix_str(f"{name} rows={rows:,} {rows / elapsed:,.0f} rows/s", refresh=False)
                    bar.update(1)

                summary = run_import(request, progress, today)
        except RequestError as exc:
            raise CommandError(str(exc)) from None
        finally:
            if mirror is not None:
                mirror.shutdown()
                mirror.server_close()
        for line in summary.lines():
            self.stdout.write(line)
        # Non-zero whenever not everything asked for was imported; a re-run with nothing new to store is a success.
        if (shortfall := summary.shortfall()) is not None:
            raise CommandError(shortfall)
