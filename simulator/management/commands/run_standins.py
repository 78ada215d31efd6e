"""``manage.py run_standins``: the local Twilio and Telegram stand-ins (simulator.standins), for the demo and tests.

The messages they accept are kept in JSON lines files (``--dir``) and listed at ``<url>/_messages``. Point the app at
them with ``TWILIO_API_URL``/``TELEGRAM_API_URL`` and the same credentials (docs/ALERTS.md).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from simulator.standins import telegram, twilio
from simulator.standins.base import Store


class Command(BaseCommand):
    """Run both stand-ins until interrupted."""

    help = "Run the local Twilio and Telegram API stand-ins (demo and tests)."

    def add_arguments(self, parser: CommandParser) -> None:
        """Ports, address and where messages are written."""
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--twilio-port", type=int, default=9461)
        parser.add_argument("--telegram-port", type=int, default=9462)
        parser.add_argument("--dir", default=".stack/standins", help="JSON lines files of the accepted messages")

    def handle(self, *args: Any, **options: Any) -> None:
        """Start both, print where their messages are, serve until SIGINT/SIGTERM."""
        folder = Path(options["dir"])
        folder.mkdir(parents=True, exist_ok=True)
        servers = [
            twilio.start(
                options["host"],
                options["twilio_port"],
                Store(folder / "twilio.jsonl"),
                settings.TWILIO_ACCOUNT_SID or "ACdemo",
                settings.TWILIO_AUTH_TOKEN or "demo-token",
                settings.TWILIO_FROM or "+15005550006",
            ),
            telegram.start(
                options["host"],
                options["telegram_port"],
                Store(folder / "telegram.jsonl"),
                settings.TELEGRAM_BOT_TOKEN or "123456:demo",
            ),
        ]
        for name, server in zip(("Twilio", "Telegram"), servers, strict=True):
            self.stdout.write(f"{name} stand-in on {server.url} (messages: {server.url}/_messages)")
        # Flushed now: stdout to a file or a pipe is block-buffered, and whoever started it waits for these lines.
        self.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            for server in servers:
                server.shutdown()
                server.server_close()
