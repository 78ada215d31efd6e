"""The ``market.books`` snapshot message, split into parts that each fit in a Kafka message (docs/BOOKS.md).

A Coinbase BTC-USD book holds about 46,000 levels: one JSON message of it is over 1 MB, Kafka's default limit
(kafka-python's ``max_request_size``, the broker's ``message.max.bytes``), and the producer would refuse it for
ever (a permanent error: the book's consumers would never get a snapshot). So a snapshot of more than
``part_levels`` levels on a side goes out as consecutive messages ``part: [index, count]`` carrying the same
``last_id``, ``t`` and ``valid``, each with the next slice of both sides (best prices in the first part). They share
the market's key, so they reach one partition in order; a consumer applies the snapshot when its last part arrives
(:class:`books.keeper.BookKeeper`). Schema version 2 is what added ``part``: a consumer of version 1 would take one
part for the whole book, so it refuses these messages instead.
"""

from __future__ import annotations

from typing import Any

import orjson

#: the version of the ``market.books`` messages the feeds write
SCHEMA_VERSION = 2
#: the versions a consumer reads (version 1 has no ``part``: every snapshot is whole)
READABLE_VERSIONS = (1, 2)
#: the most parts a snapshot may have (a consumer refuses more)
MAX_PARTS = 1000


def snapshot_messages(
    exchange: str,
    symbol: str,
    last_id: int | None,
    t: int | None,
    valid: bool,
    levels: dict[str, list[list[str]]],
    received_at: int,
    part_levels: int,
) -> list[bytes]:
    """The messages of one snapshot: one when each side has at most ``part_levels`` levels, else one per slice of
    ``part_levels`` levels a side (``levels``: ``{"bids": [[price, qty], ...], "asks": [...]}``, best first)."""
    bids, asks = levels["bids"], levels["asks"]
    count = max(1, -(-max(len(bids), len(asks)) // part_levels))
    if count > MAX_PARTS:
        raise ValueError(f"a snapshot of {max(len(bids), len(asks))} levels a side needs more than {MAX_PARTS} parts")
    messages = []
    for index in range(count):
        start, end = index * part_levels, (index + 1) * part_levels
        message: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "exchange": exchange,
            "symbol": symbol,
            "kind": "snapshot",
            "first_id": last_id,
            "last_id": last_id,
            "t": t,
            "valid": valid,
            "bids": bids[start:end],
            "asks": asks[start:end],
            "received_at": received_at,
        }
        if count > 1:
            message["part"] = [index, count]
        messages.append(orjson.dumps(message))
    return messages
