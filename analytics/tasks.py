"""Celery tasks of the ``analytics`` queue (``detect_whales`` runs on ``alerts``): thin wrappers over the app.

Every task takes keys and time ranges, recomputes from stored data and upserts, so running it twice (a
redelivery after a worker died: ``acks_late`` + ``reject_on_worker_lost``) changes nothing. Only transient
infrastructure errors are retried, with exponential backoff and jitter; anything else is a bug and fails loudly.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from typing import Any

import redis
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Q
from kombu.exceptions import OperationalError as KombuOperationalError

from analytics import candles as candle_logic
from analytics import indicators as indicator_logic
from analytics import queries
from analytics import retention as retention_logic
from analytics import stats as stats_logic
from analytics import whales as whale_logic
from analytics.coalesce import CANDLES_PUSH_PREFIX, claim_slot
from analytics.groups import OVERVIEW_GROUP, WHALES_GROUP, market_group
from analytics.live import publish_many
from analytics.models import Candle, IndicatorPoint, WhaleAlert
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


def candle_payload(candle: Candle) -> dict[str, Any]:
    """One entry of the ``candles`` list of a ``candles`` push (docs/ARCHITECTURE.md)."""
    return {
        "i": candle.interval,
        "t": candle_logic.datetime_to_ms(candle.open_time),
        "o": str(candle.open),
        "h": str(candle.high),
        "l": str(candle.low),
        "c": str(candle.close),
        "v": str(candle.volume),
        "qv": str(candle.quote_volume),
        "n": candle.trade_count,
        "vwap": str(candle.vwap),
    }


def update_series(exchange: str, symbol: str, start_ms: int, end_ms: int) -> dict[str, Any] | None:
    """Recompute the candles touching the range (all intervals) and their indicators in one transaction;
    return the ``candles`` push, or ``None`` when no stored trade falls in the range."""
    with transaction.atomic():
        keys = candle_logic.recompute_candles(exchange, symbol, start_ms, end_ms)
        if not keys:
            return None
        by_interval: dict[str, list[datetime]] = defaultdict(list)
        for key in keys:
            by_interval[key.interval].append(key.open_time)
        indicators: list[dict[str, Any]] = []
        for interval, times in by_interval.items():  # keys come in ALL_INTERVALS order, 1m first
            touched = set(times)
            points = indicator_logic.update_indicators(exchange, symbol, interval, min(times), locked=True)
            indicators.extend(indicator_logic.indicator_payload(interval, p) for p in points if p.open_time in touched)
        touched_q = Q()
        for interval, times in by_interval.items():
            touched_q |= Q(interval=interval, open_time__in=times)
        order = {interval: i for i, interval in enumerate(candle_logic.ALL_INTERVALS)}
        rows = sorted(
            Candle.objects.filter(touched_q, exchange=exchange, symbol=symbol),
            key=lambda c: (order[c.interval], c.open_time),
        )
        candles = [candle_payload(c) for c in rows]
    return {"kind": "candles", "exchange": exchange, "symbol": symbol, "candles": candles, "indicators": indicators}


def latest_candles_payload(exchange: str, symbol: str) -> dict[str, Any] | None:
    """A ``candles`` push of the newest candle of every interval with its indicators (the trailing push)."""
    latest = [
        c
        for interval in candle_logic.ALL_INTERVALS
        # One index probe per interval on the candle natural key, newest first.
        if (
            c := Candle.objects.filter(exchange=exchange, symbol=symbol, interval=interval)
            .order_by("-open_time")
            .first()
        )
    ]
    if not latest:
        return None
    keyed = Q()
    for c in latest:
        keyed |= Q(interval=c.interval, open_time=c.open_time)
    points = {
        (p.interval, p.open_time): p for p in IndicatorPoint.objects.filter(keyed, exchange=exchange, symbol=symbol)
    }
    indicators = [
        indicator_logic.indicator_payload(c.interval, indicator_logic.row_from_point(p))
        for c in latest
        if (p := points.get((c.interval, c.open_time))) is not None
    ]
    candles = [candle_payload(c) for c in latest]
    return {"kind": "candles", "exchange": exchange, "symbol": symbol, "candles": candles, "indicators": indicators}


def push_candles(exchange: str, symbol: str, payload: dict[str, Any]) -> str:
    """Push one run's candles, throttled per symbol across all workers (``CANDLES_PUSH_INTERVAL``).

    The first run in a period pushes its candles at once; the next schedules ONE trailing push of the newest
    candles after the period (what the skipped runs changed, in a live series); later ones in the period push
    nothing. Returns ``sent``, ``scheduled`` or ``coalesced``.
    """
    delay = claim_slot(CANDLES_PUSH_PREFIX, exchange, symbol, settings.CANDLES_PUSH_INTERVAL)
    if delay == 0:
        publish_many([(market_group(exchange, symbol), payload)])
        return "sent"
    if delay is not None:
        push_latest_candles.apply_async((exchange, symbol), countdown=delay)
        return "scheduled"
    return "coalesced"


@shared_task(name="analytics.tasks.update_candles", **RETRY_OPTIONS)
def update_candles(exchange: str, symbol: str, start_ms: int, end_ms: int) -> int:
    """Recompute candles and indicators for the range, then push ``candles`` to the symbol's group (throttled)."""
    payload = update_series(exchange, symbol, start_ms, end_ms)
    if payload is None:
        return 0
    # Pushed after the commit: the dashboard may read the rows back as soon as it hears of them.
    push_candles(exchange, symbol, payload)
    # Apps built on the candles (live price prediction) hear of the committed range; a failing receiver is
    # logged and never fails the update.
    for receiver, result in candles_updated.send_robust(
        sender=update_candles, exchange=exchange, symbol=symbol, start_ms=start_ms, end_ms=end_ms
    ):
        if isinstance(result, Exception):
            logger.error("candles_updated receiver %r failed for %s:%s", receiver, exchange, symbol, exc_info=result)
    return len(payload["candles"])


@shared_task(name="analytics.tasks.push_latest_candles", **RETRY_OPTIONS)
def push_latest_candles(exchange: str, symbol: str) -> bool:
    """The trailing throttled push: the newest candle of each interval, read back from the database."""
    payload = latest_candles_payload(exchange, symbol)
    if payload is None:
        return False
    publish_many([(market_group(exchange, symbol), payload)])
    return True


# Routed to the ``alerts`` queue by CELERY_TASK_ROUTES, beside alert delivery.
@shared_task(name="analytics.tasks.detect_whales", **RETRY_OPTIONS)
def detect_whales(exchange: str, symbol: str, start_ms: int, end_ms: int) -> int:
    """Create the missing whale alerts for the range, push the new ones as ``whales`` and hand the range's alerts
    to delivery."""
    ids = whale_logic.detect_whales(exchange, symbol, start_ms, end_ms)
    if ids:
        alerts = list(WhaleAlert.objects.filter(id__in=ids).order_by("traded_at", "trade_id"))
        payload = {"kind": "whales", "alerts": [whale_logic.alert_payload(a) for a in alerts]}
        publish_many([(WHALES_GROUP, payload), (market_group(exchange, symbol), payload)])
    # Every alert of the range, not only the new ones: a run that died (or could not reach the broker) between
    # its insert and this hand-off is made good by its retry or a replay. The fan-out is idempotent and a
    # delivery is sent once, so handing an alert over again costs one cheap task.
    whale_logic.hand_to_delivery(whale_logic.alerts_in_range(exchange, symbol, start_ms, end_ms))
    return len(ids)


@shared_task(name="analytics.tasks.refresh_stats", **RETRY_OPTIONS)
def refresh_stats(exchange: str, symbol: str) -> bool:
    """Refresh the symbol's 24-hour row and push ``stats`` to its group and ``overview``."""
    stats = stats_logic.refresh_stats(exchange, symbol)
    if stats is None:
        return False
    payload = stats_logic.stats_payload(stats)
    publish_many([(market_group(exchange, symbol), payload), (OVERVIEW_GROUP, payload)])
    return True


class SymbolsFailedError(RuntimeError):
    """Some symbols of a per-symbol loop failed (each logged with its symbol); the others were done."""


def refresh_symbols_stats(pairs: list[tuple[str, str]]) -> tuple[list[tuple[str, dict[str, Any]]], list[Exception]]:
    """Refresh each symbol's row; one symbol's failure is logged with the symbol and never stops the others.

    Returns the pushes to send and the errors, in order.
    """
    payloads: list[tuple[str, dict[str, Any]]] = []
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
            payload = stats_logic.stats_payload(stats)
            payloads += [(market_group(exchange, symbol), payload), (OVERVIEW_GROUP, payload)]
    return payloads, errors


@shared_task(name="analytics.tasks.refresh_all_stats", **RETRY_OPTIONS)
def refresh_all_stats() -> int:
    """Beat: refresh every known symbol's 24-hour row (catches windows whose refresh was coalesced away).

    A symbol that fails does not abort the others: their rows are written and pushed, then the task fails (a
    transient error is re-raised so Celery retries the whole, idempotent refresh; anything else as
    :class:`SymbolsFailedError`, loudly).
    """
    payloads, errors = refresh_symbols_stats(queries.known_pairs())
    publish_many(payloads)
    if errors:
        extra = {"failed": len(errors), "pushed": len(payloads) // 2}
        logger.error("stats refresh failed for some symbols", extra=extra)
        transient = next((e for e in errors if isinstance(e, TRANSIENT_ERRORS)), None)
        if transient is not None:
            raise transient
        raise SymbolsFailedError(f"stats refresh failed for {len(errors)} symbols: {errors[0]!r}") from errors[0]
    return len(payloads) // 2


@shared_task(name="analytics.tasks.apply_retention", **RETRY_OPTIONS)
def apply_retention() -> int:
    """Beat: delete expired trades in bounded batches."""
    return retention_logic.apply_retention()
