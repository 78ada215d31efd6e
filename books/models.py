"""The stored order books (docs/BOOKS.md, "Storage"): the 1 s metrics series, the top-N snapshots, and the books
consumer's replay checkpoints.

Both series are range-partitioned on their window's start (``books/partitions.py``, the trades' machinery of
:mod:`analytics.partitions`), so retention drops whole days. PostgreSQL enforces a unique key on a partitioned table
only if it holds the partition column: the natural keys are (exchange, symbol, window start) and the primary keys
(id, window start), made in SQL by migration 0001; Django sees ``id`` as the primary key.

A row holds the book as it stood after the last update of its window that the consumer has read. It is written by
an upsert that only moves forward in the topic (``source_offset``, the Kafka offset of that update), so replaying
messages never takes a row back, and a row ends equal whatever the batch boundaries were.
"""

from __future__ import annotations

from django.db import models

from analytics.models import amount_field, price_field


class BookMetric(models.Model):
    """One market's book metrics at the end of one second of exchange event time (``L2Book.metrics()``)."""

    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    second = models.DateTimeField(help_text="The start of the event-time second.")
    t = models.BigIntegerField(help_text="Exchange event time (epoch ms) of the last update applied.")
    last_id = models.BigIntegerField(null=True, help_text="The exchange's last update id applied; null if invalid.")
    valid = models.BooleanField(help_text="False: the book broke in this second (the metrics are then null).")
    best_bid = price_field(null=True)
    best_ask = price_field(null=True)
    spread = price_field(null=True)
    mid = amount_field(null=True)
    bid_depth_10bps = amount_field(null=True)
    ask_depth_10bps = amount_field(null=True)
    bid_depth_1pct = amount_field(null=True)
    ask_depth_1pct = amount_field(null=True)
    imbalance = amount_field(null=True)
    source_offset = models.BigIntegerField(help_text="Kafka offset of the last message applied (the upsert's order).")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol", "second"], name="book_metric_natural_key"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol} {self.second:%Y-%m-%d %H:%M:%S} valid={self.valid}"


class BookSnapshot(models.Model):
    """One market's top ``BOOK_DEPTH_LEVELS`` levels a side at the end of one ``BOOK_STORE_EVERY_S`` window of
    exchange event time; ``bids``/``asks`` are ``[[price, qty], ...]`` of exact decimal strings, best first."""

    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    window_start = models.DateTimeField(help_text="The start of the event-time window.")
    t = models.BigIntegerField(help_text="Exchange event time (epoch ms) of the last update applied.")
    last_id = models.BigIntegerField(null=True, help_text="The exchange's last update id applied; null if invalid.")
    valid = models.BooleanField(help_text="False: the book broke in this window (then no levels).")
    bids = models.JSONField()
    asks = models.JSONField()
    source_offset = models.BigIntegerField(help_text="Kafka offset of the last message applied (the upsert's order).")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["exchange", "symbol", "window_start"], name="book_snapshot_natural_key"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol} t={self.t} valid={self.valid}"


class ReplayCheckpoint(models.Model):
    """Where a consumer group must re-read a partition from to rebuild its books, after each stored batch.

    ``through`` is the batch's next offset (what it commits); ``replay_from`` is the offset of the oldest valid
    snapshot message the books held then were built from (``through`` when no book was held). Written in the batch's
    transaction, so it is durable exactly when the batch's rows are.
    """

    group = models.CharField(max_length=200)
    topic = models.CharField(max_length=249)
    partition = models.IntegerField()
    through = models.BigIntegerField()
    replay_from = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "topic", "partition", "through"], name="book_checkpoint_key"),
        ]

    def __str__(self) -> str:
        return f"{self.group} {self.topic}[{self.partition}] {self.through} <- {self.replay_from}"
