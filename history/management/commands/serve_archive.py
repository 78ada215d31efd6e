"""``manage.py serve_archive``: a local mirror of data.binance.vision over HTTP (404 for missing files, Range
support), serving a folder in the archive's layout, e.g. ``data/binance-klines``."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from history.mirror import MirrorServer


class Command(BaseCommand):
    """Serve an archive folder until SIGTERM or Ctrl-C, for ``import_history`` runs without the internet."""

    help = "Serve a folder in data.binance.vision's layout over HTTP (BINANCE_DATA_URL=http://HOST:PORT)."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare ``--root``, ``--host`` and ``--port``."""
        parser.add_argument("--root", default="data/binance-klines", help="folder holding data/spot/...")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9450, help="0 picks a free port")

    def handle(self, *args: Any, **options: Any) -> None:
        """Serve until stopped; a missing root or a port in use is a CommandError."""
        try:
            server = MirrorServer(Path(options["root"]), options["host"], options["port"])
        except (FileNotFoundError, OSError) as exc:
            raise CommandError(str(exc)) from None

        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        self.stdout.write(f"serving {server.root} on {server.url}")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
