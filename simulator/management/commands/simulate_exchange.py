"""``manage.py simulate_exchange``: a local exchange (any registered exchange's protocol) replaying recorded
trades or generating synthetic ones, with fault injection, for the demo, the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.records import TradeRecord
from simulator.config import EXCHANGES, ConfigError, SimulatorConfig
from simulator.depth import DepthTape, read_coinbase_l2, read_depth
from simulator.feed import PaceKey, exchange_symbol, on_present_clock, replay_source, trade_time
from simulator.ids import StateError, continue_ids, load_last_ids, save_last_ids
from simulator.replay import ReplayError
from simulator.server import Simulator
from simulator.synthetic import synthetic_trades

logger = logging.getLogger(__name__)


def build_source(
    options: dict[str, Any], exchange: str, depth: DepthTape | None = None
) -> tuple[Iterable[TradeRecord], PaceKey, tuple[str, ...]]:
    """The trade source the options ask for, its pace key and the symbols known up front. A Binance replay's
    recorded ``depth`` follows the trades: onto the present clock (``--present``) and round each loop (``--loop``)."""
    follow = depth if exchange == "binance" else None
    if options["synthetic"]:
        if options["replay"]:
            raise CommandError("--synthetic and --replay exclude each other")
        # In the exchange's own spelling: btcusdt is BTCUSDT on Binance, BTC-USDT on Coinbase, BTC/USDT on Kraken.
        symbols = tuple(
            exchange_symbol(exchange, s.strip()) for s in (options["symbols"] or "").split(",") if s.strip()
        )
        if not symbols:
            raise CommandError("--synthetic needs --symbols (for example btcusdt,ethusdt)")
        if not options["rate"] or options["rate"] <= 0:
            raise CommandError("--synthetic needs --rate N (trades per second, > 0)")
        source = synthetic_trades(symbols, options["rate"], exchange=exchange, seed=options["seed"])
        return source, trade_time, symbols
    if not options["replay"]:
        raise CommandError("give --replay FILE [FILE ...] or --synthetic --rate N --symbols ...")
    try:
        # Every file is opened now: a missing or unknown file stops the command at start, not mid-replay.
        records, pace, names = replay_source(
            options["replay"],
            options["symbol"],
            loop=options["loop"],
            exchange=exchange,
            on_pass=follow.next_pass if follow is not None else None,
        )
    except ReplayError as exc:
        raise CommandError(f"--replay: {exc}") from None
    if options.get("max_trades"):
        if options["max_trades"] < 0:
            raise CommandError(f"--max-trades must be positive, got {options['max_trades']}")
        # A finite market: fault tests compare the stored trades with exactly these N.
        records = ended_after(records, options["max_trades"])
    if options.get("preload"):
        if options["loop"] and not options.get("max_trades"):
            raise CommandError("--preload needs a finite market: with --loop, give --max-trades too")
        # Read and parsed now, before anyone connects: the feed then costs only its sending (benchmarks measure the
        # clients, not how fast the simulator reads its files).
        records = iter(list(records))
    if options.get("present"):
        if follow is not None:
            follow.present()
        records, pace = on_present_clock(
            records, pace, lambda: time.time_ns() // 1_000_000, follow.align if follow is not None else None
        )
    return records, pace, tuple(sorted(names))


#: the depth fault options and who takes them
DEPTH_FAULTS = (
    ("depth_drop_every", "--depth-drop-every", ("binance", "coinbase", "kraken")),
    ("depth_swap_every", "--depth-swap-every", ("binance", "coinbase", "kraken")),
    ("depth_cross_every", "--depth-cross-every", ("binance", "coinbase", "kraken")),
    ("depth_checksum_every", "--depth-checksum-every", ("kraken",)),
)


def build_depth(options: dict[str, Any], exchange: str) -> DepthTape | None:
    """The recorded book events of a replay, with the depth fault plan (None for other sources, or files without
    book events). Binance: the recordings' depth events; Coinbase: their ``level2`` events; Kraken: book frames
    derived from a Binance depth recording (there is no Kraken book recording). Binance's follow the trades onto
    the present clock and round each loop (:func:`build_source`); Coinbase's and Kraken's play once and keep their
    recorded times: not with ``--present``."""
    faults: dict[str, int] = {}
    for key, name, exchanges in DEPTH_FAULTS:
        value = options.get(key) or 0
        if value < 0 or value == 1:
            raise CommandError(f"{name} must be 0 (off) or at least 2, got {value}")
        if value and exchange not in exchanges:
            raise CommandError(f"{name}: only {', '.join(exchanges)} (not {exchange})")
        faults[key] = value
    if exchange not in ("binance", "coinbase", "kraken") or not options.get("replay") or options.get("synthetic"):
        return None
    if options.get("present") and exchange != "binance":
        logger.info("simulator: --present: the recorded depth events are not replayed (they keep recorded times)")
        return None
    try:
        if exchange == "coinbase":
            tape = read_coinbase_l2(options["replay"])
        elif exchange == "kraken":
            tape = read_depth(options["replay"], rename=lambda symbol: exchange_symbol("kraken", symbol))
        else:
            tape = read_depth(options["replay"])
    except FileNotFoundError as exc:  # read before the trades are: the same words as theirs
        raise CommandError(f"--replay: {exc.filename}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"--replay: depth events: {exc}") from None
    if tape is None:
        return None
    tape.drop_every, tape.swap_every = faults["depth_drop_every"], faults["depth_swap_every"]
    tape.cross_every, tape.checksum_every = faults["depth_cross_every"], faults["depth_checksum_every"]
    if exchange == "kraken":
        # Kraken's book is per subscription (its depth and checksum): each connection applies the faults itself.
        tape.apply_faults = False
        logger.info(
            "simulator: Kraken book frames are DERIVED from the Binance depth recording (the project holds no Kraken "
            "book recording): the Binance book seen through each subscription's depth, with Kraken's checksum",
            extra={"events": len(tape), "symbols": sorted(tape.symbols())},
        )
    else:
        logger.info("simulator: replaying recorded depth events", extra={"events": len(tape)})
    return tape


def ended_after(records: Iterable[TradeRecord], max_trades: int) -> Iterator[TradeRecord]:
    """The first ``max_trades`` of ``records``; says in the log when the limit, not the source, ended the market."""
    sent = 0
    for record in itertools.islice(records, max_trades):
        sent += 1
        yield record
    if sent == max_trades:
        # Clients see the market go quiet, not close: this line is what tells the operator why.
        logger.info(
            f"simulator: --max-trades {max_trades} reached, the market ends: no more trades "
            "(the server runs until stopped)",
            extra={"max_trades": max_trades},
        )


class Command(BaseCommand):
    """Serve a simulated exchange until SIGTERM/SIGINT, ``--lifetime`` or the end of its trades."""

    help = "Simulate an exchange's WebSocket and its REST trades (gap backfill) from recorded or synthetic trades."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the source (``--replay`` or synthetic), pacing, fault-injection, REST and ``--state`` options."""
        parser.add_argument("--exchange", choices=EXCHANGES, default="binance")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
        parser.add_argument("--replay", nargs="+", metavar="FILE", help="recorded trade files (plain, gzip, zstd)")
        parser.add_argument("--symbol", help="symbol of data.binance.vision CSV files whose name has none")
        parser.add_argument("--speed", type=float, default=1.0, help="1 = recorded pacing, 0 = as fast as read")
        parser.add_argument(
            "--max-rate", type=float, default=0.0, help="cap on trades per second, any source (0: none)"
        )
        parser.add_argument("--loop", action="store_true", help="repeat the files with shifted ids and times")
        parser.add_argument(
            "--max-trades", type=int, default=0, help="end the market after N trades (0: no end; with --loop)"
        )
        parser.add_argument(
            "--preload", action="store_true", help="read the whole replay into memory before listening (benchmarks)"
        )
        parser.add_argument(
            "--present",
            action="store_true",
            help="shift recorded times to the present (the first trade at the moment the feed starts)",
        )
        parser.add_argument("--synthetic", action="store_true", help="random walk instead of a replay")
        parser.add_argument("--rate", type=float, default=0.0, help="synthetic trades per second")
        parser.add_argument("--symbols", default="", help="synthetic symbols, comma separated")
        parser.add_argument("--drop-every", type=int, default=0, help="close each connection after N frames")
        parser.add_argument("--gap-every", type=int, default=0, help="skip one trade id every N trades")
        parser.add_argument("--malformed-rate", type=float, default=0.0, help="probability of a malformed frame")
        parser.add_argument(
            "--depth-drop-every", type=int, default=0, help="books: never send every N-th depth event (the book has it)"
        )
        parser.add_argument(
            "--depth-swap-every", type=int, default=0, help="books: send every N-th depth event after the next one"
        )
        parser.add_argument(
            "--depth-cross-every",
            type=int,
            default=0,
            help="books: every N-th depth event also carries a bid above every ask (a crossed book)",
        )
        parser.add_argument(
            "--depth-checksum-every",
            type=int,
            default=0,
            help="Kraken books: every N-th book update carries a wrong checksum",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--start-delay", type=float, default=0.0, help="seconds between first subscribe and feed")
        parser.add_argument("--ping-interval", type=float, default=20.0, help="Binance pings every 20 s (0: off)")
        parser.add_argument("--ping-timeout", type=float, default=60.0, help="disconnect without pong (s)")
        parser.add_argument("--lifetime", type=float, default=24 * 3600.0, help="connection lifetime (s, 0: none)")
        parser.add_argument(
            "--rest-history",
            type=int,
            default=0,
            help="REST reaches back this many trades per symbol (0: all stored); older gaps are unrecoverable",
        )
        parser.add_argument(
            "--state",
            type=Path,
            metavar="FILE",
            help="keep each symbol's last trade id sent in FILE and continue after it on the next start (a restarted "
            "market never issues an id twice; without it a replay restarts at the recording's ids)",
        )
        parser.add_argument(
            "--rest-rate",
            type=float,
            default=None,
            help="REST requests per second (default: the exchange's public limit; 0: no limit)",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=100,
            help="at most N trades a frame where the exchange batches them (Coinbase, Kraken, OKX, Bybit; 0: no bound)",
        )
        parser.add_argument(
            "--single-fills",
            action="store_true",
            help="send every fill as its own trade where the exchange aggregates a taker order's fills (OKX)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Build the source and config (bad options are CommandErrors), continue ``--state``'s ids, and serve."""
        exchange = options["exchange"]
        depth = build_depth(options, exchange)
        source, pace, symbols = build_source(options, exchange, depth)
        state: Path | None = options.get("state")
        self._known_ids: dict[str, int] = {}
        if state is not None:
            try:
                self._known_ids = load_last_ids(state, exchange)
            except StateError as exc:
                raise CommandError(str(exc)) from None
            source = continue_ids(source, self._known_ids)
        try:
            config = SimulatorConfig(
                exchange=exchange,
                host=options["host"],
                port=options["port"],
                speed=options["speed"],
                max_rate=options["max_rate"],
                loop=options["loop"],
                drop_every=options["drop_every"],
                gap_every=options["gap_every"],
                malformed_rate=options["malformed_rate"],
                seed=options["seed"],
                start_delay=options["start_delay"],
                ping_interval=options["ping_interval"] or None,
                ping_timeout=options["ping_timeout"] or None,
                lifetime=options["lifetime"],
                rest_history=options["rest_history"],
                rest_rate=options["rest_rate"],
                single_fills=options["single_fills"],
                batch_size=options["batch_size"],
                symbols=symbols,
            )
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        asyncio.run(self._serve(Simulator(config, source, pace, depth), state))

    async def _serve(self, simulator: Simulator, state: Path | None = None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        listening = False

        def ready(host: str, port: int) -> None:
            nonlocal listening
            listening = True
            self.stdout.write(f"listening on ws://{host}:{port}")
            self.stdout.flush()

        keeper = asyncio.create_task(self._keep_state(simulator, state)) if state is not None else None
        try:
            await simulator.serve(stop, ready)
        except OSError as exc:
            if listening:
                raise
            # Before ``ready`` the only OSError is the listening socket's (a port in use, an address not ours).
            config = simulator.config
            raise CommandError(f"--host {config.host} --port {config.port}: {exc.strerror or exc}") from None
        finally:
            if keeper is not None and state is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                self._save_state(simulator, state)
        self.stdout.write(
            f"stopped: {simulator.feed.produced} trades produced, {simulator.connections} connections served, "
            f"{simulator.malformed} malformed frames sent"
        )

    async def _keep_state(self, simulator: Simulator, state: Path, interval: float = 1.0) -> None:
        """Rewrite the state file every ``interval`` seconds while the market runs (a crash loses at most that)."""
        saved: dict[str, int] = {}
        while True:
            await asyncio.sleep(interval)
            try:
                saved = self._save_state(simulator, state, saved)
            except OSError as exc:  # the market goes on; the next turn (or the shutdown) tries again
                logger.warning("simulator: state file not written", extra={"path": str(state), "error": str(exc)})

    def _save_state(self, simulator: Simulator, state: Path, saved: dict[str, int] | None = None) -> dict[str, int]:
        """Write the symbols' last ids (this run's, and an earlier run's for symbols not traded yet) when changed."""
        last_ids = {**self._known_ids, **simulator.feed.store.last_ids()}
        if last_ids and last_ids != saved:
            save_last_ids(state, simulator.config.exchange, last_ids)
        return last_ids
