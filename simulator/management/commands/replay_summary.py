"""``manage.py replay_summary``: the prices a replay starts with, as JSON, so the demo can place alerts that fire.

For each recorded stream (grouped by symbol like ``simulate_exchange --replay``): its first price, and the highest
and lowest price within its first N minutes for each ``--minutes``. The simulator replays a stream from its start,
so these are the prices the demo's market shows in its first minutes (and again on each loop).
"""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from functools import partial
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.records import TradeRecord
from simulator.replay import ReplayError, read_many, read_trades


def _until(end_ms: int, trade: TradeRecord) -> bool:
    """Whether the trade is at or before ``end_ms`` (the window's end)."""
    return trade.trade_time <= end_ms


def summary(paths: list[str], minutes: list[int]) -> dict[str, dict[str, Any]]:
    """``{symbol: {"start": price, "windows": {"<minutes>": {"high": price, "low": price}}}}`` (decimal strings)."""
    groups: dict[str, list[str]] = {}
    for path in paths:
        first = next(read_trades(path), None)
        if first is not None:
            groups.setdefault(first.symbol, []).append(path)
    out: dict[str, dict[str, Any]] = {}
    longest = max(minutes)
    for symbol, files in groups.items():
        trades = read_many(files)
        first = next(trades)
        end_ms = first.trade_time + longest * 60_000
        later = itertools.takewhile(partial(_until, end_ms), trades)
        seen = [(0, Decimal(first.price))] + [(t.trade_time - first.trade_time, Decimal(t.price)) for t in later]
        windows = {}
        for span in minutes:
            prices = [price for offset, price in seen if offset <= span * 60_000]
            windows[str(span)] = {"high": str(max(prices)), "low": str(min(prices))}
        out[symbol] = {"start": first.price, "windows": windows}
    return out


class Command(BaseCommand):
    """Print the replay's starting prices as JSON."""

    help = "Print each replayed stream's first price and its high/low within its first minutes (JSON)."

    def add_arguments(self, parser: CommandParser) -> None:
        """``--replay`` files, ``--minutes`` windows."""
        parser.add_argument("--replay", nargs="+", required=True, help="recorded files, as simulate_exchange takes")
        parser.add_argument("--minutes", default="2,5,10", help="comma-separated windows (default 2,5,10)")

    def handle(self, *args: Any, **options: Any) -> None:
        """Write the summary to stdout."""
        try:
            minutes = [int(m) for m in options["minutes"].split(",") if m.strip()]
        except ValueError as exc:
            raise CommandError(f"--minutes: expected comma-separated integers ({exc})") from exc
        if not minutes or min(minutes) < 1:
            raise CommandError("--minutes: at least one window of 1 minute or more")
        try:
            self.stdout.write(json.dumps(summary(options["replay"], minutes), indent=1))
        except ReplayError as exc:
            raise CommandError(str(exc)) from exc
