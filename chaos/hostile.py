"""Hostile records for ``market.trades``: records no consumer may store, and none may die of.

Each is built from a valid record with one deliberate defect, so it is certain to be invalid (a fuzzer that might
produce a valid trade would make the expected counts wrong). The first ones are the cases seen in the field; the
rest are drawn from the same families with a seeded generator.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

BASE: dict[str, Any] = {
    "v": 1,
    "exchange": "binance",
    "symbol": "BTCUSDT",
    "trade_id": 1,
    "price": "1",
    "quantity": "1",
    "is_buyer_maker": True,
    "trade_time": 1723161255342,
    "event_time": 1723161255343,
    "received_at": 1723161256612,
}


def _with(**changes: Any) -> bytes:
    record = dict(BASE, **changes)
    return json.dumps(record).encode()


def _without(field: str) -> bytes:
    return json.dumps({k: v for k, v in BASE.items() if k != field}).encode()


# Hostile records reported in the review of the consumer's reliability, verbatim where they were given.
SEEN: list[bytes] = [
    _with(exchange=[]),  # TypeError: unhashable type: 'list' (crash-looped consume_trades)
    _with(symbol={"a": 1}),
    _with(price="²"),  # a non-ASCII digit: str.isdigit() says yes, Decimal/int say no
    _with(quantity="1²"),
    _with(trade_id="9" * 5000),  # more digits than int() converts by default
    _with(trade_id=9 * 10**40),  # beyond bigint
    _with(price="NaN"),
    _with(price="Infinity"),
    _with(price="-1"),
    _with(quantity="0"),
    _with(v=2),
    _with(trade_time=32503680000000),  # year 3000: well-formed but far beyond received_at
    b"\xff\xfe not json",
    b"",
    b"null",
    b"[1, 2, 3]",
    b'"just a string"',
    json.dumps(dict(BASE, pad="x" * 300_000)).encode()[:200_000],  # a huge, truncated record
]

_FAMILIES: list[Callable[[random.Random], bytes]] = [
    lambda r: _without(r.choice(list(BASE))),
    lambda r: _with(**{r.choice(["exchange", "symbol"]): r.choice([[], {}, 1, None, True, "", " "])}),
    lambda r: _with(**{r.choice(["price", "quantity"]): r.choice(["", "abc", "1e999999", "-0.5", [], None, "0x10"])}),
    lambda r: _with(trade_id=r.choice([-1, "x", None, 1.5, [], "1" * r.randint(4301, 6000)])),
    lambda r: _with(**{r.choice(["trade_time", "event_time", "received_at"]): r.choice(["soon", None, -1, [], 1e300])}),
    lambda r: _with(is_buyer_maker=r.choice(["yes", 2, None, []])),
    lambda r: bytes(r.getrandbits(8) for _ in range(r.randint(1, 64))) + b"\xff",
    lambda r: json.dumps(dict(BASE)).encode()[: r.randint(1, 60)],  # truncated JSON
]


def hostile_records(count: int = 100, seed: int = 0) -> list[bytes]:
    """``count`` invalid records: the seen cases first, then seeded draws from the families above."""
    rng = random.Random(seed)
    out = list(SEEN[:count])
    while len(out) < count:
        out.append(rng.choice(_FAMILIES)(rng))
    return out
