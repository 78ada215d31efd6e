"""Ingest metrics: plain counters on the hot path, read by the JSON log line, Prometheus and Redis snapshots."""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from cryptoproject.kafka_offsets import METRICS_TTL_SECONDS, ingest_metrics_key

logger = logging.getLogger(__name__)

#: Publish latency buckets in seconds (receive -> broker ack).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COUNTERS = (
    "messages_received",
    "trades_published",
    "trades_accepted",
    "malformed",
    "reconnects",
    "gaps",
    "missing_trades",
    "backfilled",
    "duplicates",
    "publish_errors",
    "dlq_published",
    "parser_errors",
    "trades_resent",
    "producer_restarts",
    "backpressure_waits",
    "trades_not_delivered",
    "backfill_pages",
    "backfill_abandoned",
    "backfill_abandoned_trades",
    "backfill_unrecoverable",
    "backfill_unrecoverable_trades",
    "thread_failures",
    "resumed_holes",
    "tail_probes",
    "tail_backfilled",
    "journal_spilled",
    "journal_replayed",
    "journal_full_waits",
    # Order books (docs/BOOKS.md, "Ingest"); all 0 with --channels trades.
    "book_events",
    "book_deltas",
    "book_snapshots",
    "book_messages_published",
    "book_syncs",
    "book_resyncs",
    "book_snapshot_requests",
    "book_snapshot_errors",
    "book_malformed",
)
#: figures that go up and down (Prometheus gauges)
GAUGES = (
    "buffered",
    "buffered_max",
    "buffered_bytes",
    "buffered_bytes_max",
    "journal_bytes",
    "journal_bytes_max",
    "backfill_queued",
)


class IngestMetrics:
    """Counters and a publish-latency histogram for one ingest process.

    Counters are plain ints updated from the connection and producer threads (an ``int +=`` under the GIL
    loses nothing that matters for monitoring, and costs a fraction of a lock per trade).
    """

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self.started_at = time.time()
        self.messages_received = 0
        self.trades_published = 0  # acknowledged by the broker
        self.trades_accepted = 0  # handed to the producer
        self.malformed = 0
        self.reconnects = 0
        self.gaps = 0
        self.missing_trades = 0  # ids in gaps
        self.backfilled = 0
        self.duplicates = 0
        self.publish_errors = 0
        self.dlq_published = 0
        self.parser_errors = 0  # parser exceptions (each frame also dead-lettered and counted as malformed)
        self.trades_resent = 0  # re-sent after Kafka did not acknowledge them (outage)
        self.producer_restarts = 0
        self.backpressure_waits = 0  # times the buffer was full and reading waited for Kafka
        self.trades_not_delivered = 0  # records given up at shutdown (the exit code says so too)
        self.backfill_pages = 0
        self.backfill_abandoned = 0  # gaps not backfilled (over the cap, queue full, REST failure)
        self.backfill_abandoned_trades = 0
        self.backfill_unrecoverable = 0  # ranges older than the exchange's REST history serves
        self.backfill_unrecoverable_trades = 0
        self.thread_failures = 0  # connection or worker threads that died (ingest then exits non-zero)
        self.resumed_holes = 0  # ranges missing on Kafka found at start (ingest.resume), sent to backfill
        self.tail_probes = 0  # REST probes of quiet symbols for trades no live trade has revealed yet
        self.tail_backfilled = 0
        self.book_events = 0  # valid depth events handed to the sync machines
        self.book_deltas = 0  # delta messages for market.books (events applied while in sync)
        self.book_snapshots = 0  # snapshot messages for market.books (syncs, periodic, breaks)
        self.book_messages_published = 0  # book messages acknowledged by the broker
        self.book_syncs = 0  # REST snapshots that brought a book in sync
        self.book_resyncs = 0  # breaks (a gap, a crossed book, bad data) that asked for a new snapshot
        self.book_snapshot_requests = 0
        self.book_snapshot_errors = 0  # REST snapshot requests that failed (asked again a second later)
        self.book_malformed = 0  # refused depth frames (also counted in ``malformed``, dead-lettered)
        self.buffered = 0  # records held until Kafka acknowledges them
        self.buffered_max = 0
        self.buffered_bytes = 0  # their size as INGEST_BUFFER_BYTES counts it (serialised, plus a per-record overhead)
        self.buffered_bytes_max = 0
        self.journal_spilled = 0  # records written to the disk journal (the memory bound was reached)
        self.journal_replayed = 0  # records read back from it and handed to Kafka
        self.journal_full_waits = 0  # times the journal was full too and reading waited (back-pressure)
        self.journal_bytes = 0  # what the journal holds on disk
        self.journal_bytes_max = 0
        self.backfill_queued = 0  # gaps waiting for the backfill worker
        self.first_received_at: float | None = None  # wall clock of the first trade seen
        self.last_acked_at: float | None = None
        self._lock = threading.Lock()
        self._bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0

    def observe_latency(self, seconds: float) -> None:
        """One publish latency sample (receive -> ack)."""
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            self._bucket_counts[index] += 1
            self._latency_sum += seconds
            self._latency_count += 1

    def latency(self) -> tuple[list[int], float, int]:
        """Cumulative bucket counts (the last is +Inf), sum and count."""
        with self._lock:
            counts = list(self._bucket_counts)
            total, count = self._latency_sum, self._latency_count
        cumulative, running = [], 0
        for value in counts:
            running += value
            cumulative.append(running)
        return cumulative, total, count

    def latency_quantile(self, q: float) -> float | None:
        """An upper bound of the ``q`` quantile from the buckets (None before any sample)."""
        cumulative, _total, count = self.latency()
        if not count:
            return None
        target = q * count
        for bound, running in zip((*LATENCY_BUCKETS, float("inf")), cumulative, strict=True):
            if running >= target:
                return bound
        return float("inf")  # pragma: no cover - the +Inf bucket always reaches the count

    def snapshot(self) -> dict[str, Any]:
        """All figures as a JSON-ready dict (what the log line and the Redis key hold)."""
        now = time.time()
        _cumulative, total, count = self.latency()
        data: dict[str, Any] = {"exchange": self.exchange, "at": int(now * 1000)}
        data.update({name: getattr(self, name) for name in COUNTERS})
        data.update({name: getattr(self, name) for name in GAUGES})
        data["uptime_s"] = round(now - self.started_at, 3)
        data["publish_latency_avg_ms"] = round(total / count * 1000, 3) if count else None
        p99 = self.latency_quantile(0.99)
        data["publish_latency_p99_le_ms"] = None if p99 is None else (p99 * 1000 if p99 != float("inf") else "inf")
        if self.first_received_at is not None and self.last_acked_at is not None:
            elapsed = self.last_acked_at - self.first_received_at
            data["throughput_trades_per_s"] = round(self.trades_published / elapsed, 1) if elapsed > 0 else None
        return data


class IngestCollector(Collector):
    """Exposes :class:`IngestMetrics` in Prometheus format, read at scrape time."""

    def __init__(self, metrics: IngestMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        """One family per counter, plus the latency histogram and uptime."""
        labels = ["exchange"]
        for name in COUNTERS:
            family = CounterMetricFamily(f"ingest_{name}", f"Ingest {name.replace('_', ' ')}", labels=labels)
            family.add_metric([self.metrics.exchange], getattr(self.metrics, name))
            yield family
        cumulative, total, _count = self.metrics.latency()
        buckets = [(str(bound), value) for bound, value in zip(LATENCY_BUCKETS, cumulative, strict=False)]
        buckets.append(("+Inf", cumulative[-1]))
        histogram = HistogramMetricFamily(
            "ingest_publish_latency_seconds", "Receive to broker acknowledgement", labels=labels
        )
        histogram.add_metric([self.metrics.exchange], buckets, total)
        yield histogram
        for name in GAUGES:
            gauge = GaugeMetricFamily(f"ingest_{name}", f"Ingest {name.replace('_', ' ')}", labels=labels)
            gauge.add_metric([self.metrics.exchange], getattr(self.metrics, name))
            yield gauge
        uptime = GaugeMetricFamily("ingest_uptime_seconds", "Seconds since ingest started", labels=labels)
        uptime.add_metric([self.metrics.exchange], time.time() - self.metrics.started_at)
        yield uptime


def registry_for(metrics: IngestMetrics) -> CollectorRegistry:
    """A registry of its own (the default one would mix in process collectors of tests)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(IngestCollector(metrics))
    return registry


def serve_prometheus(metrics: IngestMetrics, port: int, addr: str | None = None) -> CollectorRegistry:
    """Serve ``/metrics`` on ``port`` from a background thread; returns the registry.

    ``addr`` defaults to ``METRICS_BIND_ADDRESS`` (127.0.0.1): the endpoint has no authentication, so reaching it
    from another host is an explicit choice.
    """
    from django.conf import settings

    registry = registry_for(metrics)
    start_http_server(port, addr=addr or settings.METRICS_BIND_ADDRESS, registry=registry)
    return registry


class MetricsReporter:
    """Every ``interval`` seconds: one JSON log line and the Redis snapshot ``metrics:ingest:<exchange>``."""

    def __init__(self, metrics: IngestMetrics, redis_client: Any | None, interval: float = 10.0) -> None:
        self.metrics = metrics
        self.redis = redis_client
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-metrics", daemon=True)

    @property
    def redis_key(self) -> str:
        """Where the dashboard's health page finds the snapshot."""
        return ingest_metrics_key(self.metrics.exchange)

    def report(self) -> dict[str, Any]:
        """Log and store one snapshot now; a Redis outage is logged, never raised."""
        data = self.metrics.snapshot()
        logger.info("ingest metrics", extra={"metrics": data})
        if self.redis is not None:
            try:
                self.redis.set(self.redis_key, orjson.dumps(data), ex=METRICS_TTL_SECONDS)
            except Exception as exc:  # noqa: BLE001 - monitoring must not stop ingest; redis raises many types
                logger.warning("metrics snapshot not stored in Redis", extra={"error": str(exc)})
        return data

    def start(self) -> None:
        """Start the background reporting thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write a final snapshot."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.report()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.report()
