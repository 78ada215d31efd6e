"""The live-inference hook: when a trade range crossed into a new bar of an active model's interval, the bar
before it has closed, so ``prediction.tasks.predict_closed`` is queued on ``ml``: once per symbol and closed bar,
never per trade or per candle update."""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache
from django.dispatch import receiver

from analytics.signals import candles_updated
from prediction.clock import last_closed_bar
from prediction.models import PredictionModel

logger = logging.getLogger(__name__)
# A claimed (symbol, interval, closed bar) is remembered this long: far longer than a replay or a catch-up takes
# to leave the bar behind. A lost claim (cache flushed) only costs a repeated, idempotent prediction.
CLAIM_SECONDS = 6 * 3600


def claim_key(exchange: str, symbol: str, interval: str, closed_ms: int) -> str:
    """The cache key claiming the inference of one closed bar."""
    return f"prediction:closed:{exchange}:{symbol}:{interval}:{closed_ms}"


@receiver(candles_updated, dispatch_uid="prediction.dispatch_inference")
def dispatch_inference(sender: Any, exchange: str, symbol: str, start_ms: int, end_ms: int, **_: Any) -> bool:
    """Queue one inference for the symbol when a bar of an active model's interval has closed. Returns whether
    it queued one."""
    intervals = set(
        PredictionModel.objects.filter(exchange=exchange, symbol=symbol, active=True).values_list("interval", flat=True)
    )
    claimed = False
    for interval in sorted(intervals):
        closed = last_closed_bar(interval, end_ms)
        if cache.add(claim_key(exchange, symbol, interval, closed), 1, CLAIM_SECONDS):
            claimed = True
    if claimed:
        from prediction.tasks import predict_closed

        predict_closed.delay(exchange, symbol, end_ms)
    return claimed
