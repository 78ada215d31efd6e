"""``manage.py replay_books``: a Binance depth recording's books, rebuilt and pushed live to the market page.

The books are rebuilt with :class:`~books.binance.BinanceBookSync` from the recording (the bundled
``data/binance-spot-ws/btcusdt_2024080[89].gz`` by default) and pushed through :class:`~books.live.BookPusher`,
paced by their recorded event times: the depth and spread/imbalance charts of ``/market/binance/BTCUSDT/`` move as
they did on 2024-08-08, with no ingest, Kafka or book consumer running (docs/BOOKS.md, "The live book on the
market page").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from books.live import BookPusher
from books.replay import depth_items, replay

RECORDINGS = [Path(settings.BASE_DIR) / "data" / "binance-spot-ws" / f"btcusdt_2024080{day}.gz" for day in (8, 9)]


class Command(BaseCommand):
    """Replay a recording's books into the live push ``--passes`` times (0: until stopped)."""

    help = "Rebuild a Binance depth recording's books and push them to the market page at their recorded pace."

    def add_arguments(self, parser: CommandParser) -> None:
        """``--file`` (repeatable), ``--symbol``, ``--speed``, ``--passes``, ``--drop-event``."""
        parser.add_argument("--file", action="append", type=Path, help="a recording (default: the bundled BTCUSDT)")
        parser.add_argument("--symbol", default="BTCUSDT", help="the symbol whose depth stream to replay")
        parser.add_argument(
            "--speed", type=float, default=1.0, help="recorded seconds per second (0: as fast as possible)"
        )
        parser.add_argument(
            "--passes", type=int, default=1, help="times to replay, a fresh sync each pass (0: until stopped)"
        )
        parser.add_argument(
            "--drop-event",
            type=int,
            default=0,
            help="never apply the N-th depth event (a lost frame): the book breaks and shows as resyncing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Check the options, then replay (each pass reports its events, pushes and final state)."""
        paths: list[Path] = options["file"] or RECORDINGS
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CommandError(f"--file: no such recording: {', '.join(missing)}")
        if options["speed"] < 0:
            raise CommandError(f"--speed: must be 0 or more, got {options['speed']}")
        if options["passes"] < 0:
            raise CommandError(f"--passes: must be 0 (until stopped) or more, got {options['passes']}")
        if options["drop_event"] < 0:
            raise CommandError(f"--drop-event: must be 0 (none) or more, got {options['drop_event']}")
        symbol = options["symbol"].upper()
        pusher = BookPusher()
        done = 0
        while True:
            stats = replay(
                depth_items(paths, symbol), pusher, symbol, speed=options["speed"], drop_event=options["drop_event"]
            )
            if not stats.events:
                raise CommandError(f"no {symbol.lower()}@depth event in {', '.join(map(str, paths))}")
            self.stdout.write(
                f"replayed {stats.events} events of binance {symbol} ({stats.dropped} dropped): {stats.pushes} pushes, "
                f"{stats.resyncs} resyncs, book {'valid' if stats.valid else 'resyncing'} at the end"
            )
            done += 1
            if done == options["passes"]:
                return
