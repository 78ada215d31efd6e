"""``manage.py record --exchange binance --symbols btcusdt,ethusdt --out DIR [--channels trades,books]``: capture an
exchange's raw frames, trades and books (``<recv ns> <frame>`` lines, hourly zstd files) for ``simulate_exchange
--replay`` later."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from books.stream import rest_fetch
from ingest.exchanges import get, names
from ingest.management.commands.ingest import parse_channels
from simulator.recorder import FrameRecorder, RecorderError, record

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    """Record raw frames until SIGTERM/SIGINT or ``--max-frames``; a crash loses at most ``--flush-interval``."""

    help = "Record an exchange's raw WebSocket frames with their receive time (ns) into hourly zstd files."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare ``--exchange``, ``--symbols``, ``--out``, ``--url``, ``--max-frames`` and ``--flush-interval``."""
        parser.add_argument("--exchange", required=True, choices=names())
        parser.add_argument("--symbols", required=True, help="comma-separated, e.g. btcusdt,ethusdt or BTC-USD")
        parser.add_argument("--out", required=True, help="directory of the recordings (created if missing)")
        parser.add_argument("--url", help="WebSocket URL (default: the exchange's <EXCHANGE>_WS_URL setting)")
        parser.add_argument("--max-frames", type=int, default=0, help="stop after N data frames (0: no limit)")
        parser.add_argument(
            "--channels",
            default=None,
            help="trades, books or trades,books (default: trades; books: binance, coinbase, kraken)",
        )
        parser.add_argument(
            "--flush-interval", type=float, default=1.0, help="seconds of frames a crash may lose at most"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Validate the options (CommandError naming the bad one), record, then print the frame count and files."""
        exchange: str = options["exchange"]
        url: str = options["url"] or getattr(settings, get(exchange).ws_url_setting)
        if not url.startswith(("ws://", "wss://")):
            raise CommandError(f"--url must be a ws:// or wss:// URL, got {url!r}")
        if options["max_frames"] < 0:
            raise CommandError("--max-frames must be >= 0")
        if options["flush_interval"] <= 0:
            raise CommandError("--flush-interval must be > 0")
        symbols = [s for s in options["symbols"].split(",") if s.strip()]
        try:
            get(exchange).adapter(url).normalise_symbols(symbols)
        except ValueError as exc:
            raise CommandError(f"--symbols: {exc}") from exc
        # Trades only by default, as before: a recording of trades stays one (and the simulator's market starts with
        # its first subscriber, which a book connection could be).
        channels = tuple(sorted(parse_channels(options.get("channels") or "trades", exchange)))
        snapshot = None
        if "books" in channels and exchange == "binance":
            rest_url = getattr(settings, get(exchange).rest_url_setting or "", None)
            if rest_url:
                fetch = rest_fetch(rest_url)

                def snapshot(symbol: str) -> Any:
                    return fetch(symbol, settings.BOOK_SNAPSHOT_LIMIT)

        try:
            recorder = FrameRecorder(options["out"], exchange, flush_interval=options["flush_interval"])
        except RecorderError as exc:
            raise CommandError(str(exc)) from exc
        stop = threading.Event()

        def _stop(signum: int, _frame: Any) -> None:
            logger.info("stopping", extra={"signal": signal.Signals(signum).name})
            stop.set()

        previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            record(
                exchange,
                symbols,
                url,
                recorder,
                stop,
                max_frames=options["max_frames"],
                channels=channels,
                snapshot=snapshot,
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        files = ", ".join(str(path) for path in recorder.finished) or "none"
        self.stdout.write(f"recorded {recorder.frames} frames ({recorder.bytes} bytes); files: {files}")
