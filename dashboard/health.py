"""Pipeline health for operators: ingest rate and the trades ingest could not backfill, Kafka consumer lag per
partition, DLQ size, age of the last trade per symbol, Celery queue depths, the consumer snapshots and, when one is
configured, how far the PostgreSQL read replica trails the primary.

Every source is optional: a missing snapshot, an unreachable broker or Redis shows up as ``null`` with an error
string, never as an exception. Kafka figures take a few round trips, so they are cached for ``KAFKA_CACHE_SECONDS``.

:func:`consumer_liveness` is the verdict ``/healthz`` answers 503 on: the trades consumer group is stalled when a
member says so in its snapshot (see :mod:`analytics.watchdog`), or when records wait (lag > 0) and the group's
committed offsets have not moved for longer than ``CONSUMER_STALL_TIMEOUT_S`` (whether or not any member has an
assignment). An unreadable Kafka is "unknown", not unhealthy: the web process itself is fine.

Error texts never carry credentials (URLs are shown without their userinfo), and only staff see them at all:
:func:`public_view` reduces the picture to figures for everyone else.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models import Max
from django.utils import timezone
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, UnknownTopicOrPartitionError

from analytics import partitions as partition_logic
from analytics.models import SymbolStats, Trade
from analytics.queries import known_pairs
from books.consumer import METRICS_PREFIX as BOOKS_METRICS_PREFIX
from cryptoproject.db_router import REPLICA
from cryptoproject.kafka import BrokerUnavailableError, admin_client, client_config
from cryptoproject.kafka_offsets import (
    CONSUMER_METRICS_PREFIX,
    INGEST_METRICS_PREFIX,
    GroupLag,
    committed_by_admin,
    group_lag,
    topic_partitions,
)
from cryptoproject.queues import CeleryQueue
from cryptoproject.redis_clients import redis_client
from cryptoproject.security import redact_text, redact_url

logger = logging.getLogger(__name__)

KAFKA_TIMEOUT_SECONDS = 3.0
KAFKA_CACHE_SECONDS = 2.0
REDIS_TIMEOUT_SECONDS = 1.0
CELERY_QUEUES = tuple(queue.value for queue in CeleryQueue)
# Kombu's Redis transport keeps priorities 3, 6 and 9 of a queue in sibling lists "<queue>\x06\x16<priority>".
_KOMBU_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")

T = TypeVar("T")
_cache: dict[tuple[str, ...], tuple[float, Any]] = {}
_cache_lock = threading.Lock()
_previous_ingest: dict[str, dict[str, Any]] = {}
# (group, topic) -> (committed offsets last seen, monotonic time they were first seen or lag was last zero)
_group_progress: dict[tuple[str, str], tuple[tuple[int | None, ...], float]] = {}


def _cached(key: tuple[str, ...], compute: Callable[[], T], ttl: float = KAFKA_CACHE_SECONDS) -> T:
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
    value = compute()
    with _cache_lock:
        _cache[key] = (time.monotonic(), value)
    return value


def clear_cache() -> None:
    """Forget cached Kafka figures and previous ingest snapshots (tests, and after reconfiguration)."""
    with _cache_lock:
        _cache.clear()
    _previous_ingest.clear()
    _group_progress.clear()


# --------------------------------------------------------------------------------------------- Kafka
def _consumer() -> KafkaConsumer:
    ms = int(KAFKA_TIMEOUT_SECONDS * 1000)
    return KafkaConsumer(
        **client_config(),
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=max(ms, 1000) + 500,
        metadata_max_age_ms=ms,
        bootstrap_timeout_ms=ms,
    )


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = topic_partitions(consumer, topic)
    if not parts:
        # Retriable: a topic created a moment ago may not be in this fresh client's metadata yet.
        raise UnknownTopicOrPartitionError(f"topic {topic!r} does not exist")
    return parts


def _with_retry(read: Callable[[], T], attempts: int = 3) -> T:
    """Run ``read``, again on a retriable Kafka error (a coordinator still loading, a leader moving)."""
    for attempt in range(1, attempts + 1):
        try:
            return read()
        except KafkaError as exc:
            if not exc.retriable or attempt == attempts:
                raise
            logger.info("retrying a Kafka health read", extra={"error": repr(exc), "attempt": attempt})
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _read_lag(group: str, topic: str) -> GroupLag:
    admin = None
    consumer = None
    try:
        admin = admin_client(timeout=KAFKA_TIMEOUT_SECONDS)
        committed = committed_by_admin(admin, group, topic)
        consumer = _consumer()
        partitions = _partitions(consumer, topic)
        return group_lag(consumer, group, partitions, committed, int(KAFKA_TIMEOUT_SECONDS * 1000))
    finally:
        if consumer is not None:
            consumer.close()
        if admin is not None:
            admin.close()


def consumer_lag(group: str, topic: str) -> dict[str, Any]:
    """Committed offset, end offset and lag per partition of ``topic`` for consumer ``group``.

    A partition the group never committed counts its whole retained backlog as lag (``committed`` is null): the
    rule of :mod:`cryptoproject.kafka_offsets`, which the consumer's watchdog applies too.
    """
    try:
        lag = _with_retry(lambda: _read_lag(group, topic))
    except (KafkaError, BrokerUnavailableError, OSError, ValueError) as exc:
        return {"topic": topic, "group": group, "partitions": [], "total_lag": None, "error": redact_text(str(exc))}
    return {
        "topic": topic,
        "group": group,
        "partitions": [p.as_dict() for p in lag.partitions],
        "total_lag": lag.total,
        "error": None,
    }


def dlq_count(topic: str) -> dict[str, Any]:
    """Records retained in the dead-letter topic: sum of end minus beginning offsets."""
    consumer = None
    try:
        consumer = _consumer()
        partitions = _partitions(consumer, topic)
        timeout_ms = int(KAFKA_TIMEOUT_SECONDS * 1000)
        ends = consumer.end_offsets(partitions, timeout_ms=timeout_ms)
        begins = consumer.beginning_offsets(partitions, timeout_ms=timeout_ms)
    except (KafkaError, BrokerUnavailableError, OSError, ValueError) as exc:
        return {"topic": topic, "count": None, "error": redact_text(str(exc))}
    finally:
        if consumer is not None:
            consumer.close()
    return {"topic": topic, "count": sum(ends[tp] - begins[tp] for tp in partitions), "error": None}


# --------------------------------------------------------------------------------------------- Redis
def read_snapshots(client: redis.Redis, prefix: str) -> dict[str, dict[str, Any]]:
    """Every JSON snapshot under ``<prefix>*`` (SCAN, never KEYS), by the key's suffix; unreadable ones skipped."""
    keys = sorted(client.scan_iter(match=f"{prefix}*", count=100))
    if not keys:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for key, raw in zip(keys, client.mget(keys), strict=True):
        if raw is None:
            continue  # expired between SCAN and MGET
        name = (key.decode() if isinstance(key, bytes) else str(key))[len(prefix) :]
        try:
            value = json.loads(raw)
        except ValueError:
            logger.warning("unreadable metrics snapshot", extra={"key": name})
            continue
        if isinstance(value, dict):
            found[name] = value
    return found


def ingest_rate(current: dict[str, Any], previous: dict[str, Any] | None) -> float | None:
    """Trades per second between two snapshots of one ingest process, else its average since start."""
    try:
        if previous is not None and current.get("at", 0) > previous.get("at", 0):
            delta = int(current["trades_published"]) - int(previous["trades_published"])
            if delta >= 0:
                return round(delta / ((int(current["at"]) - int(previous["at"])) / 1000), 1)
        average = current.get("throughput_trades_per_s")
        return float(average) if average is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def _count(snapshot: dict[str, Any], name: str) -> int:
    value = snapshot.get(name)
    return value if type(value) is int and value >= 0 else 0


def not_recovered(snapshot: dict[str, Any]) -> dict[str, int]:
    """Trades an ingest process knows it missed for good since it started: gaps it gave up on (over the size
    cap, queue full, REST failing, stopping) and ids older than the exchange's REST still serves."""
    abandoned = _count(snapshot, "backfill_abandoned_trades")
    unrecoverable = _count(snapshot, "backfill_unrecoverable_trades")
    return {"abandoned": abandoned, "unrecoverable": unrecoverable, "total": abandoned + unrecoverable}


def book_syncs(snapshot: dict[str, Any]) -> dict[str, int]:
    """An ingest process's order books (docs/BOOKS.md): snapshots synced and resyncs (breaks that asked for a new
    snapshot); both 0 without the books channel."""
    return {"syncs": _count(snapshot, "book_syncs"), "resyncs": _count(snapshot, "book_resyncs")}


def ingest_health(client: redis.Redis) -> dict[str, Any]:
    """``metrics:ingest:<exchange>`` snapshots with a rate each and the total, and the trades each process
    could not backfill (``not_recovered``; summed over the exchanges at the top)."""
    snapshots = read_snapshots(client, INGEST_METRICS_PREFIX)
    exchanges = {}
    total = 0.0
    lost = 0
    for exchange, snapshot in snapshots.items():
        rate = ingest_rate(snapshot, _previous_ingest.get(exchange))
        # Keep the older snapshot until the ingest process writes a newer one, so the rate spans a real interval.
        if _previous_ingest.get(exchange, {}).get("at") != snapshot.get("at"):
            _previous_ingest[exchange] = snapshot
        total += rate or 0.0
        missed = not_recovered(snapshot)
        lost += missed["total"]
        exchanges[exchange] = {
            "rate": rate,
            "snapshot": snapshot,
            "not_recovered": missed,
            "books": book_syncs(snapshot),
        }
    return {
        "rate": round(total, 1) if exchanges else None,
        "not_recovered": lost if exchanges else None,
        "exchanges": exchanges,
    }


def queue_depths(client: redis.Redis, queues: tuple[str, ...] = CELERY_QUEUES) -> dict[str, int]:
    """Messages waiting in each Celery queue on the Redis broker (all priority levels)."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for suffix in _KOMBU_PRIORITY_SUFFIXES:
            pipe.llen(queue + suffix)
    lengths = pipe.execute()
    step = len(_KOMBU_PRIORITY_SUFFIXES)
    return {queue: int(sum(lengths[i * step : (i + 1) * step])) for i, queue in enumerate(queues)}


# --------------------------------------------------------------------------------------------- PostgreSQL
def last_trades(now: datetime | None = None) -> list[dict[str, Any]]:
    """Age of the last stored trade per known symbol: one index probe per pair (never a scan)."""
    now = now or timezone.now()
    stats = {
        (s.exchange, s.symbol): s.last_trade_at for s in SymbolStats.objects.only("exchange", "symbol", "last_trade_at")
    }
    rows = []
    for exchange, symbol in known_pairs():
        last = Trade.objects.filter(exchange=exchange, symbol=symbol).aggregate(last=Max("traded_at"))["last"]
        last = last or stats.get((exchange, symbol))
        rows.append(
            {
                "exchange": exchange,
                "symbol": symbol,
                "last_trade_at": last.isoformat() if last else None,
                "age_seconds": round((now - last).total_seconds(), 3) if last else None,
            }
        )
    return rows


# Seconds behind: 0 while everything received is replayed; else since the last replayed commit (an overestimate
# when the primary was idle before the burst being replayed; lag_bytes has no such blind spot).
_REPLICA_SQL = """
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END
"""


def replica_status() -> dict[str, Any] | None:
    """The read replica (``DATABASE_REPLICA_URL``): a standby or not, and its lag behind the primary in WAL bytes
    and seconds; ``None`` when none is configured. The replica is asked first, so the lag is never understated."""
    if not settings.DATABASE_REPLICA_URL:
        return None
    status: dict[str, Any] = {"in_recovery": None, "lag_bytes": None, "lag_seconds": None, "error": None}
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(_REPLICA_SQL)
            in_recovery, replay_lsn, lag_seconds = cursor.fetchone()
        status["in_recovery"] = in_recovery
        if not in_recovery:
            status["error"] = "the replica is not in recovery: DATABASE_REPLICA_URL names a primary"
            return status
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [replay_lsn])
            (lag_bytes,) = cursor.fetchone()
    except DatabaseError as exc:
        status["error"] = f"replica: {redact_text(str(exc))}"
        return status
    # No commit replayed yet since the replica started: bytes only.
    seconds = None if lag_seconds is None else round(float(lag_seconds), 3)
    status.update(lag_bytes=max(0, int(lag_bytes)), lag_seconds=seconds)
    return status


# --------------------------------------------------------------------------------------------- consumer liveness
def group_idle_seconds(lag: dict[str, Any], now: float | None = None) -> float | None:
    """Seconds the group's committed offsets have not moved while records wait; 0 when none wait, ``None`` when
    the lag is unknown. Remembered per process between calls (``/healthz`` is polled)."""
    if lag.get("total_lag") is None:
        return None
    now = time.monotonic() if now is None else now
    key = (str(lag["group"]), str(lag["topic"]))
    committed = tuple(row["committed"] for row in lag["partitions"])
    seen = _group_progress.get(key)
    if lag["total_lag"] == 0 or seen is None or seen[0] != committed:
        _group_progress[key] = (committed, now)
        return 0.0
    return now - seen[1]


def consumer_liveness(
    consumers: dict[str, dict[str, Any]], lag: dict[str, Any], stall_timeout_s: float, now: float | None = None
) -> dict[str, Any]:
    """``{"status": "ok" | "stalled" | "unknown", "reason": str | None, ...}`` of the trades consumer group."""
    stalled = sorted(name for name, snapshot in consumers.items() if snapshot.get("stalled"))
    assigned = sum(1 for snapshot in consumers.values() if snapshot.get("assigned_partitions", 1))
    idle = group_idle_seconds(lag, now)
    verdict: dict[str, Any] = {
        "status": "ok",
        "reason": None,
        "members": len(consumers),
        "members_with_partitions": assigned,
        "no_progress_s": None if idle is None else round(idle, 1),
        "stall_timeout_s": stall_timeout_s,
    }
    if stalled:
        first = consumers[stalled[0]]
        verdict.update(
            status="stalled",
            reason=f"consumer {stalled[0]} reports no progress for {first.get('no_progress_s')} s "
            f"({len(stalled)} of {len(consumers)} members stalled)",
        )
    elif idle is None:
        verdict.update(status="unknown", reason=f"consumer lag unavailable: {lag.get('error')}")
    elif idle > stall_timeout_s:
        verdict.update(
            status="stalled",
            reason=f"{lag['total_lag']} records wait and the group committed nothing for {idle:.0f} s "
            f"({assigned} members with partitions; bound {stall_timeout_s:g} s)",
        )
    return verdict


def group_liveness() -> dict[str, Any]:
    """:func:`consumer_liveness` from the consumers' Redis snapshots and the (cached) group lag."""
    group, topic = settings.KAFKA_CONSUMER_GROUP, settings.KAFKA_TRADES_TOPIC
    consumers, _ = _redis_section(settings.REDIS_URL, lambda client: read_snapshots(client, CONSUMER_METRICS_PREFIX))
    lag = _cached(("lag", group, topic), lambda: consumer_lag(group, topic))
    return consumer_liveness(consumers or {}, lag, settings.CONSUMER_STALL_TIMEOUT_S)


# --------------------------------------------------------------------------------------------- all together
def _redis_section(url: str, compute: Callable[[redis.Redis], T]) -> tuple[T | None, str | None]:
    try:
        client = redis_client(url, timeout=REDIS_TIMEOUT_SECONDS)
        try:
            return compute(client), None
        finally:
            client.close()
    except redis.RedisError as exc:
        return None, f"Redis at {redact_url(url)}: {redact_text(str(exc))}"


def trade_storage() -> dict[str, Any]:
    """The trades table's partitions: how many, the span they cover, and the trades outside every one of them
    (kept in the default partition; a count above 0 means a day's partition was missing when they arrived)."""
    parts = partition_logic.partitions()
    return {
        "partitions": len(parts),
        "first": parts[0].start.isoformat() if parts else None,
        "end": parts[-1].end.isoformat() if parts else None,
        "default_rows": partition_logic.default_rows(),
    }


def pipeline_health() -> dict[str, Any]:
    """The whole health picture as a JSON-ready dict (the ``/api/v1/health`` body)."""
    group, topic, dlq = settings.KAFKA_CONSUMER_GROUP, settings.KAFKA_TRADES_TOPIC, settings.KAFKA_DLQ_TOPIC
    ingest, ingest_error = _redis_section(settings.REDIS_URL, ingest_health)
    # The trades consumers and the books consumers (consume_books) report to the same Redis: one section, one error.
    members, consumers_error = _redis_section(
        settings.REDIS_URL,
        lambda client: (read_snapshots(client, CONSUMER_METRICS_PREFIX), read_snapshots(client, BOOKS_METRICS_PREFIX)),
    )
    consumers, book_consumers = members or ({}, {})
    queues, queues_error = _redis_section(settings.CELERY_BROKER_URL, queue_depths)
    lag = _cached(("lag", group, topic), lambda: consumer_lag(group, topic))
    replica = replica_status()
    return {
        "generated_at": timezone.now().isoformat(),
        "ingest": ingest or {"rate": None, "not_recovered": None, "exchanges": {}},
        "consumers": consumers,
        "book_consumers": book_consumers,
        "liveness": consumer_liveness(consumers, lag, settings.CONSUMER_STALL_TIMEOUT_S),
        "kafka": lag,
        "dlq": _cached(("dlq", dlq), lambda: dlq_count(dlq)),
        "symbols": last_trades(),
        "storage": trade_storage(),
        "replica": replica,
        "queues": queues,
        "errors": [e for e in (ingest_error, consumers_error, queues_error, replica and replica["error"]) if e],
    }


def public_view(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` for someone who is not staff: the figures, without error texts (addresses, server messages).

    Each failing source still shows up (as ``"unavailable"``), so the page can say that something is down.
    """
    reduced = dict(body)
    for key in ("kafka", "dlq", "replica"):
        section = reduced.get(key)
        if isinstance(section, dict) and section.get("error"):
            reduced[key] = {**section, "error": "unavailable"}
    reduced["errors"] = ["a data source is unavailable"] * len(body.get("errors") or [])
    return reduced
