"""Signals of the analytics layer, for apps built on it (analytics never imports them)."""

from django.dispatch import Signal

# Sent by ``analytics.tasks.update_candles`` after the candles of a trade range were committed, with keyword
# arguments ``exchange``, ``symbol``, ``start_ms`` and ``end_ms`` (the range's trade times). Receivers must be
# cheap and must not raise: they run inside the candle update (``prediction.signals`` dispatches inference).
candles_updated = Signal()
