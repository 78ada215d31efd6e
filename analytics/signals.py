"""Signals of the analytics layer, for apps built on it (analytics never imports them)."""

from django.dispatch import Signal

# Sent by ``analytics.tasks.update_candles`` after the candles of a trade range were committed, with keyword
# arguments ``exchange``, ``symbol``, ``start_ms`` and ``end_ms`` (the range's trade times). Receivers must be
# cheap and must not raise: they run inside the candle update (``prediction.signals`` dispatches inference).
candles_updated = Signal()

# Sent by ``analytics.storage.store_trades`` (the consumer's path, ``announce=True``) INSIDE the store transaction,
# once per batch, with keyword arguments ``markets`` (a list of :class:`analytics.storage.StoredTrades`: the rows
# this transaction actually inserted, per market; a replayed trade is not among them) and ``using`` (the database
# alias). What a receiver writes commits or rolls back with the trades; a receiver that raises fails the batch (the
# consumer retries it), so it must be correct rather than cheap to fail (``alerts.wiring`` evaluates alert rules).
trades_stored = Signal()

# Sent by ``analytics.storage.store_trades`` (``announce=True``) inside the store transaction, BEFORE the insert,
# with keyword arguments ``markets`` (the set of (exchange, symbol) of the batch) and ``using``. A receiver returns
# True when it needs the inserted rows of any of them: only then does the insert return its rows and
# :data:`trades_stored` follow (a batch nobody watches is stored as cheaply as without receivers).
trades_storing = Signal()

# Sent by the trade consumer when Kafka reassigned its partitions: state a receiver keeps per market (e.g. the last
# price an alert rule saw) may have been advanced by another member meanwhile and must be reloaded.
consumer_reassigned = Signal()

# Sent by ``analytics.series.update_series`` INSIDE its transaction, after the candles and indicators of a trade
# range were recomputed, with keyword arguments ``exchange``, ``symbol`` and ``touched`` (interval -> the open times
# recomputed). What a receiver writes commits or rolls back with the candles (``alerts.candle_kinds``).
series_updated = Signal()
