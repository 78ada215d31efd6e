"""``manage.py recompute_indicators``: recompute the stored indicators of one symbol's series from a date.

For rows stored by an earlier version: earlier versions computed indicators across holes in the candles (the
demo's six years between the imported history and the live candles); the live path and the import only recompute
what changes, so those rows keep their values until this recomputes them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.indicators import recompute_indicators
from analytics.models import INTERVAL_SECONDS
from analytics.timeutil import EPOCH


class Command(BaseCommand):
    """Recompute every (or the given) interval of ``--symbol`` from ``--from`` (default: its first candle)."""

    help = "Recompute the stored indicators of a symbol's candle series (after an upgrade)."

    def add_arguments(self, parser: CommandParser) -> None:
        """``--symbol`` (required), ``--exchange``, ``--interval`` (repeatable) and ``--from``."""
        parser.add_argument("--exchange", default="binance")
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--interval", action="append", help=f"one of {', '.join(INTERVAL_SECONDS)} (default all)")
        parser.add_argument("--from", dest="start", help="YYYY-MM-DD (UTC); default: the first candle")

    def handle(self, *args: Any, **options: Any) -> None:
        """Validate the options (a CommandError names a bad one), recompute, print the rows per interval."""
        intervals = options["interval"] or list(INTERVAL_SECONDS)
        unknown = [i for i in intervals if i not in INTERVAL_SECONDS]
        if unknown:
            raise CommandError(f"--interval: unknown {', '.join(unknown)} (intervals: {', '.join(INTERVAL_SECONDS)})")
        start = EPOCH
        if options["start"]:
            try:
                start = datetime.combine(date.fromisoformat(options["start"]), time(), UTC)
            except ValueError as exc:
                raise CommandError(f"--from: not a date (YYYY-MM-DD): {options['start']!r}") from exc
        symbol = options["symbol"].upper()
        for interval in intervals:
            rows = recompute_indicators(options["exchange"], symbol, interval, start)
            self.stdout.write(f"{options['exchange']} {symbol} {interval}: {rows} indicator rows recomputed")
