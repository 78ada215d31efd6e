"""``manage.py ingest --exchange binance --symbols btcusdt,ethusdt [--channels trades,books]``: exchange WebSocket
trades -> Kafka, and order books (Binance, Coinbase, Kraken) -> ``market.books``."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from kafka.errors import KafkaError

from cryptoproject.kafka import BrokerUnavailableError, ensure_topics
from cryptoproject.preflight import require_kafka, require_redis
from cryptoproject.redis_clients import redis_client
from ingest.channels import ChannelContext, channel_factory
from ingest.client import FrameHandler
from ingest.exchanges import get, names
from ingest.exchanges.base import ConnectionPlan
from ingest.journal import JournalError, open_journal
from ingest.metrics import IngestMetrics, MetricsReporter, serve_prometheus
from ingest.producer import TradeProducer
from ingest.resume import resume_points
from ingest.runner import IngestRunner, IngestThreadError, SettingsError, load_config, make_backfiller

logger = logging.getLogger(__name__)

CHANNELS = ("trades", "books")


def parse_channels(value: str | None, exchange: str) -> set[str]:
    """``--channels``: a comma-separated subset of :data:`CHANNELS`; by default trades, plus books where the
    exchange's descriptor says it has them. :class:`CommandError` names a bad one."""
    has_books = get(exchange).capabilities.books
    if value is None:
        return {"trades", "books"} if has_books else {"trades"}
    channels = {name.strip() for name in value.split(",") if name.strip()}
    unknown = sorted(channels - set(CHANNELS))
    if unknown or not channels:
        raise CommandError(f"--channels: give a comma-separated subset of {','.join(CHANNELS)}, got {value!r}")
    if "books" in channels and not has_books:
        raise CommandError(f"--channels: {exchange} has no books channel (see docs/BOOKS.md)")
    return channels


class Command(BaseCommand):
    """Run one exchange's ingest until stopped or ``--max-trades``; bad options or settings are CommandErrors."""

    help = "Stream trades from an exchange WebSocket to Kafka (market.trades; bad input to market.trades.dlq)."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare ``--exchange``, ``--symbols``, ``--max-trades`` and the metrics options."""
        parser.add_argument("--exchange", required=True, choices=names())
        parser.add_argument("--symbols", required=True, help="comma-separated, e.g. btcusdt,ethusdt or BTC-USD")
        parser.add_argument("--max-trades", type=int, default=None, help="stop after publishing N trades")
        parser.add_argument(
            "--channels",
            default=None,
            help="trades, books or trades,books (default: both where the exchange has books; else trades)",
        )
        parser.add_argument("--metrics-port", type=int, default=9101, help="Prometheus port (0 = off)")
        parser.add_argument("--metrics-interval", type=float, default=10.0, help="seconds between metric logs")

    def handle(self, *args: Any, **options: Any) -> None:
        """Validate options, settings and Kafka (a one-line CommandError each), then stream until stopped."""
        exchange: str = options["exchange"]
        try:
            config = load_config(exchange)
        except SettingsError as exc:
            raise CommandError(str(exc)) from exc
        if options["max_trades"] is not None and options["max_trades"] <= 0:
            raise CommandError("--max-trades must be positive")
        channels = parse_channels(options.get("channels"), exchange)
        if options["max_trades"] is not None and "trades" not in channels:
            raise CommandError("--max-trades counts trades: it needs the trades channel")
        if not 0 <= options["metrics_port"] <= 65535:
            raise CommandError("--metrics-port must be 0..65535")
        symbols = [s for s in options["symbols"].split(",") if s.strip()]
        adapter = get(exchange).adapter(config.ws_url)
        try:
            adapter.normalise_symbols(symbols)
        except ValueError as exc:
            raise CommandError(f"--symbols: {exc}") from exc

        require_kafka()
        require_redis(["REDIS_URL"])  # its metrics: a refused TLS or password stops it, an outage does not
        try:
            ensure_topics()
        except BrokerUnavailableError as exc:
            raise CommandError(str(exc)) from exc

        metrics = IngestMetrics(exchange)
        if options["metrics_port"]:
            try:
                serve_prometheus(metrics, options["metrics_port"])
            except OSError as exc:
                raise CommandError(f"--metrics-port {options['metrics_port']}: {exc.strerror or exc}") from exc
        try:
            journal = open_journal(exchange, adapter.normalise_symbols(symbols))
        except JournalError as exc:
            raise CommandError(str(exc)) from exc
        producer = TradeProducer(metrics, journal=journal)
        books = "books" in channels
        try:
            producer.prepare(books=books)
        except KafkaError as exc:
            producer.close(0)
            topics = [settings.KAFKA_TRADES_TOPIC, settings.KAFKA_DLQ_TOPIC, *([settings.KAFKA_BOOKS_TOPIC] * books)]
            raise CommandError(f"Kafka topics {', '.join(topics)}: {exc}") from exc
        # A journal a crashed process left is older than anything read now, and the resume point must see it.
        producer.replay_journal()
        extra: list[tuple[ConnectionPlan, FrameHandler]] = []
        tick: Callable[[], None] | None = None
        if books:
            factory = channel_factory("books")
            if factory is None:
                producer.close(0)
                raise CommandError("--channels books: the books app is not installed (INSTALLED_APPS)")
            subscribed = tuple(adapter.normalise_symbols(symbols))
            run = factory(
                ChannelContext(
                    exchange,
                    config.ws_url,
                    config.rest_url,
                    subscribed,
                    tuple(adapter.spelling.record(s) for s in subscribed),
                    producer,
                    metrics,
                )
            )
            extra, tick = list(run.connections), run.tick
        backfiller = make_backfiller(config)
        try:
            runner = IngestRunner(
                adapter,
                symbols,
                producer,
                metrics,
                backfiller=backfiller,
                max_trades=options["max_trades"],
                trades="trades" in channels,
                extra=extra,
                tick=tick,
            )
        except SettingsError as exc:
            producer.close(0)
            raise CommandError(str(exc)) from exc
        # A restart continues after what Kafka already holds: the trades missed while down are backfilled.
        try:
            runner.resume(resume_points(exchange, runner.record_symbols))
        except KafkaError as exc:
            logger.warning("resume point unavailable, starting from the live stream", extra={"error": str(exc)})
        reporter = MetricsReporter(metrics, redis_client(), options["metrics_interval"])

        def _stop(signum: int, _frame: Any) -> None:
            logger.info("stopping", extra={"signal": signal.Signals(signum).name})
            runner.stop.set()

        previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        logger.info(
            "ingest starting", extra={"exchange": exchange, "symbols": runner.symbols, "channels": sorted(channels)}
        )
        reporter.start()
        failure: str | None = None
        try:
            runner.run()
        except IngestThreadError as exc:
            failure = str(exc)
        finally:
            # Everything accepted is delivered before the process exits, or the exit code says it was not.
            producer.close(settings.INGEST_SHUTDOWN_TIMEOUT)
            # held when Kafka did not answer in time, plus any refused by a full buffer while stopping
            undelivered = metrics.trades_not_delivered
            reporter.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info("ingest stopped", extra={"metrics": metrics.snapshot()})
        problems = []
        if failure:
            problems.append(f"a thread died ({failure})")
        if undelivered:
            problems.append(
                f"{undelivered} records not delivered to Kafka within INGEST_SHUTDOWN_TIMEOUT="
                f"{settings.INGEST_SHUTDOWN_TIMEOUT:g} s"
            )
        if problems:
            raise CommandError("ingest stopped with errors: " + "; ".join(problems))
