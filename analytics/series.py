"""A symbol's candle series after new trades: recompute candles and indicators, build and push ``candles``.

The domain behind the ``update_candles`` and ``push_latest_candles`` tasks (:mod:`analytics.tasks`), which only
call these functions.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from analytics import candles as candle_logic
from analytics import indicators as indicator_logic
from analytics import payloads, queries
from analytics.coalesce import CANDLES_PUSH_PREFIX, claim_slot
from analytics.groups import market_group
from analytics.live import publish_many
from analytics.models import Candle, IndicatorPoint
from analytics.signals import series_updated

#: the trailing push's task, sent by name (it is defined in analytics.tasks, which imports this module)
PUSH_LATEST_CANDLES = "analytics.tasks.push_latest_candles"


def update_series(exchange: str, symbol: str, start_ms: int, end_ms: int) -> payloads.CandlesPush | None:
    """Recompute the candles touching the range (all intervals) and their indicators in one transaction;
    return the ``candles`` push, or ``None`` when no stored trade falls in the range."""
    with transaction.atomic():
        keys = candle_logic.recompute_candles(exchange, symbol, start_ms, end_ms)
        if not keys:
            return None
        by_interval: dict[str, list[datetime]] = defaultdict(list)
        for key in keys:
            by_interval[key.interval].append(key.open_time)
        indicators: list[payloads.IndicatorItem] = []
        for interval, times in by_interval.items():  # keys come in ALL_INTERVALS order, 1m first
            touched = set(times)
            points = indicator_logic.update_indicators(exchange, symbol, interval, min(times), locked=True)
            indicators.extend(payloads.indicator_item(interval, p) for p in points if p.open_time in touched)
        # In the transaction: the alert rules on closed candles fire with the candles, or not at all.
        series_updated.send(sender=update_series, exchange=exchange, symbol=symbol, touched=dict(by_interval))
        touched_q = Q()
        for interval, times in by_interval.items():
            touched_q |= Q(interval=interval, open_time__in=times)
        order = {interval: i for i, interval in enumerate(candle_logic.ALL_INTERVALS)}
        rows = sorted(
            Candle.objects.filter(touched_q, exchange=exchange, symbol=symbol),
            key=lambda c: (order[c.interval], c.open_time),
        )
        candles = [payloads.candle_item(c) for c in rows]
    return payloads.candles_push(exchange, symbol, candles, indicators)


def latest_candles_payload(exchange: str, symbol: str) -> payloads.CandlesPush | None:
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
        payloads.indicator_item(c.interval, indicator_logic.row_from_point(p))
        for c in latest
        if (p := points.get((c.interval, c.open_time))) is not None
    ]
    candles = [payloads.candle_item(c) for c in latest]
    return payloads.candles_push(exchange, symbol, candles, indicators)


def push_candles(exchange: str, symbol: str, payload: payloads.CandlesPush) -> str:
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
        current_app.send_task(PUSH_LATEST_CANDLES, args=(exchange, symbol), countdown=delay)
        return "scheduled"
    return "coalesced"


def reconcile_recent(minutes: int) -> int:
    """Recompute the last ``minutes`` of trade time (up to each market's last stored trade) of every market's candles
    and indicators; returns how many markets had trades. Idempotent: the same rows as the tasks would write."""
    if minutes <= 0:
        return 0
    bounds = queries.trade_time_bounds()
    for (exchange, symbol), (_first, last) in sorted(bounds.items()):
        end_ms = int(last.timestamp() * 1000)
        update_series(exchange, symbol, end_ms - minutes * 60_000, end_ms)
    return len(bounds)
