"""Celery tasks of the ``analytics`` queue (``detect_whales`` runs on ``alerts``): thin wrappers over the app.

Every task takes keys and time ranges, recomputes from stored data and upserts, so running it twice (a
redelivery after a worker died: ``acks_late`` + ``reject_on_worker_lost``) changes nothing. Only transient
infrastructure errors are retried, with exponential backoff and jitter; anything else is a bug and fails loudly.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as KombuOperationalError

from analytics import partitions as partition_logic
from analytics import payloads, queries, series
from analytics import retention as retention_logic
from analytics import stats as stats_logic
from analytics import whales as whale_logic
from analytics.groups import OVERVIEW_GROUP, WHALES_GROUP, market_group
from analytics.live import publish_many
from analytics.models import WhaleAlert
from analytics.signals import candles_updated

logger = logging.getLogger(__name__)

# Errors that may pass on retry: the database or Redis restarting, a dropped connection, a deadlock victim.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    KombuOperationalError,  # the broker unreachable when a task queues another
)

RETRY_OPTIONS: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": settings.ANALYTICS_TASK_MAX_RETRIES,
    "ignore_result": True,
}


@shared_task(name="analytics.tasks.update_candles", **RETRY_OPTIONS)
def update_candles(exchange: str, symbol: str, start_ms: int, end_ms: int) -> int:
    """Recompute candles and indicators for the range, then push ``candles`` to the symbol's group (throttled)."""
    payload = series.update_series(exchange, symbol, start_ms, end_ms)
    if payload is None:
        return 0
    # Pushed after the commit: the dashboard may read the rows back as soon as it hears of them.
    series.push_candles(exchange, symbol, payload)
    # Apps built on the candles (live price prediction) hear of the committed range; a failing receiver is
    # logged and never fails the update.
    for receiver, result in candles_updated.send_robust(
        sender=update_candles, exchange=exchange, symbol=symbol, start_ms=start_ms, end_ms=end_ms
    ):
        if isinstance(result, Exception):
            logger.error("candles_updated receiver %r failed for %s:%s", receiver, exchange, symbol, exc_info=result)
    return len(payload["candles"])


@shared_task(name="analytics.tasks.reconcile_recent_candles", **RETRY_OPTIONS)
def reconcile_recent_candles() -> int:
    """Recompute every market's recent candles (``CANDLE_RECONCILE_MINUTES``): queued when an analytics worker
    starts (:mod:`analytics.apps`); returns how many markets."""
    return series.reconcile_recent(settings.CANDLE_RECONCILE_MINUTES)


@shared_task(name="analytics.tasks.push_latest_candles", **RETRY_OPTIONS)
def push_latest_candles(exchange: str, symbol: str) -> bool:
    """The trailing throttled push: the newest candle of each interval, read back from the database."""
    payload = series.latest_candles_payload(exchange, symbol)
    if payload is None:
        return False
    publish_many([(market_group(exchange, symbol), payload)])
    return True


# Routed to the ``alerts`` queue by CELERY_TASK_ROUTES.
@shared_task(name="analytics.tasks.detect_whales", **RETRY_OPTIONS)
def detect_whales(exchange: str, symbol: str, start_ms: int, end_ms: int) -> int:
    """Create the missing whale alerts for the range and push the new ones as ``whales`` (the whales page); users'
    whale rules are evaluated with the other kinds (docs/ALERTS.md)."""
    ids = whale_logic.detect_whales(exchange, symbol, start_ms, end_ms)
    if ids:
        alerts = list(WhaleAlert.objects.filter(id__in=ids).order_by("traded_at", "trade_id"))
        payload = payloads.whales_push(alerts)
        publish_many([(WHALES_GROUP, payload), (market_group(exchange, symbol), payload)])
    return len(ids)


@shared_task(name="analytics.tasks.refresh_stats", **RETRY_OPTIONS)
def refresh_stats(exchange: str, symbol: str) -> bool:
    """Refresh the symbol's 24-hour row and push ``stats`` to its group and ``overview``."""
    stats = stats_logic.refresh_stats(exchange, symbol)
    if stats is None:
        return False
    payload = payloads.stats_push(stats)
    publish_many([(market_group(exchange, symbol), payload), (OVERVIEW_GROUP, payload)])
    return True


class SymbolsFailedError(RuntimeError):
    """Some symbols of a per-symbol loop failed (each logged with its symbol); the others were done."""


def refresh_symbols_stats(pairs: list[tuple[str, str]]) -> tuple[list[tuple[str, payloads.StatsPush]], list[Exception]]:
    """Refresh each symbol's row; one symbol's failure is logged with the symbol and never stops the others.

    Returns the pushes to send and the errors, in order.
    """
    pushes: list[tuple[str, payloads.StatsPush]] = []
    errors: list[Exception] = []
    for exchange, symbol in pairs:
        try:
            stats = stats_logic.refresh_stats(exchange, symbol)
        except SoftTimeLimitExceeded:
            raise  # the task's time is up: not this symbol's fault
        except Exception as exc:  # reported by the caller, after every other symbol was refreshed
            errors.append(exc)
            logger.exception("stats refresh failed for a symbol", extra={"exchange": exchange, "symbol": symbol})
            continue
        if stats is not None:
            payload = payloads.stats_push(stats)
            pushes += [(market_group(exchange, symbol), payload), (OVERVIEW_GROUP, payload)]
    return pushes, errors


@shared_task(name="analytics.tasks.refresh_all_stats", **RETRY_OPTIONS)
def refresh_all_stats() -> int:
    """Beat: refresh every known symbol's 24-hour row (catches windows whose refresh was coalesced away).

    A symbol that fails does not abort the others: their rows are written and pushed, then the task fails (a
    transient error is re-raised so Celery retries the whole, idempotent refresh; anything else as
    :class:`SymbolsFailedError`, loudly).
    """
    pushes, errors = refresh_symbols_stats(queries.known_pairs())
    publish_many(pushes)
    if errors:
        extra = {"failed": len(errors), "pushed": len(pushes) // 2}
        logger.error("stats refresh failed for some symbols", extra=extra)
        transient = next((e for e in errors if isinstance(e, TRANSIENT_ERRORS)), None)
        if transient is not None:
            raise transient
        raise SymbolsFailedError(f"stats refresh failed for {len(errors)} symbols: {errors[0]!r}") from errors[0]
    return len(pushes) // 2


@shared_task(name="analytics.tasks.apply_retention", **RETRY_OPTIONS)
def apply_retention() -> dict[str, Any]:
    """Beat: drop the expired trade partitions (and the default partition's expired rows)."""
    result = retention_logic.apply_retention()
    return {"partitions": result.partitions, "default_rows": result.default_rows}


@shared_task(name="analytics.tasks.maintain_partitions", **RETRY_OPTIONS)
def maintain_partitions() -> dict[str, Any]:
    """Beat: make the trade partitions from yesterday to TRADE_PARTITIONS_AHEAD days ahead."""
    result = partition_logic.maintain()
    return {"created": result.created, "default_rows": result.default_rows}
