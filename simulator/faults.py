"""Fault injection for tests: abrupt disconnects after every N frames and malformed frames at a given rate.

Malformed frames are extra frames, sent just before a real one: the real trade is never lost. They are made
from the real frame, so they look like the exchange's own frames with one thing wrong.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

MALFORMED_KINDS = ("bad-json", "missing-field", "negative-price", "non-numeric-qty")


@dataclass(frozen=True)
class FrameFields:
    """Where a protocol's frames keep price and quantity: ``"p"``/``"q"`` quoted (Binance), bare numbers (Kraken)."""

    price: str
    quantity: str
    quoted: bool = True

    def value_pattern(self, key: str) -> re.Pattern[bytes]:
        """The ``"key":value`` pair (with its trailing comma) in a compact JSON frame."""
        value = rb'"[^"]*"' if self.quoted else rb"[-0-9.eE+]+"
        return re.compile(b'"' + re.escape(key.encode()) + b'":' + value + b",?")


def corrupt(frame: bytes, kind: str, fields: FrameFields) -> bytes:
    """A malformed copy of ``frame``: truncated JSON, a missing price, a negative price or a non-numeric quantity."""
    if kind == "bad-json":
        return frame[: max(len(frame) // 2, 1)]
    if kind == "missing-field":
        return fields.value_pattern(fields.price).sub(b"", frame, count=1)
    price_key = b'"' + fields.price.encode() + b'":'
    if kind == "negative-price":
        return frame.replace(
            price_key + (b'"' if fields.quoted else b""), price_key + (b'"-' if fields.quoted else b"-"), 1
        )
    if kind == "non-numeric-qty":
        pair = b'"' + fields.quantity.encode() + b'":"n/a",'
        # Frames never end with the quantity, so the pair always keeps its trailing comma.
        return fields.value_pattern(fields.quantity).sub(lambda _: pair, frame, count=1)
    raise ValueError(f"unknown malformed kind {kind!r}")


class Faults:
    """One connection's fault plan, deterministic for a given seed and connection number."""

    def __init__(
        self,
        fields: FrameFields,
        *,
        drop_every: int = 0,
        malformed_rate: float = 0.0,
        seed: int = 0,
        connection: int = 0,
    ) -> None:
        self.fields = fields
        self.drop_every = drop_every
        self.malformed_rate = malformed_rate
        self.random = random.Random(seed * 1_000_003 + connection)
        self.sent = 0
        self.malformed = 0

    @property
    def active(self) -> bool:
        """Whether this plan changes anything (the fast path skips it otherwise)."""
        return bool(self.drop_every or self.malformed_rate)

    def apply(self, frames: list[bytes]) -> tuple[list[bytes], bool]:
        """The frames to send in place of ``frames``, and whether to drop the connection right after them."""
        out = frames
        bad: list[int] = []  # positions of the malformed frames in ``out``
        if self.malformed_rate:
            out = []
            rate, draw, choice = self.malformed_rate, self.random.random, self.random.choice
            for frame in frames:
                if draw() < rate:
                    bad.append(len(out))
                    out.append(corrupt(frame, choice(MALFORMED_KINDS), self.fields))
                out.append(frame)
        if self.drop_every:
            room = self.drop_every - self.sent % self.drop_every
            if len(out) >= room:
                self.sent += room
                # Only the malformed frames that really go out are counted (fault tests compare this count with
                # the dead letters that ingest wrote).
                self.malformed += sum(1 for i in bad if i < room)
                return out[:room], True
        self.malformed += len(bad)
        self.sent += len(out)
        return out, False
