"""The ground truth of the order-book scenarios: the Binance book rebuilt from the recording alone.

Nothing here imports the project (nor :mod:`books`): the recording's REST snapshot line and its ``depthUpdate``
events are read with the standard library and applied as Binance documents for ``<symbol>@depth@100ms``
("How to manage a local order book correctly"):

1. drop every event with ``u`` <= the snapshot's ``lastUpdateId``;
2. the first event applied has ``U`` <= ``lastUpdateId`` + 1 <= ``u``;
3. every later event has ``U`` = the previous event's ``u`` + 1;
4. each ``[price, qty]`` is absolute: the quantity replaces the level's, and 0 removes the level.

The recording itself must follow steps 2 and 3 (it has no hole): :class:`BookTruth` refuses one that does not,
rather than build a truth that is wrong. A side is a plain ``dict`` of exact ``Decimal`` price to ``Decimal``
quantity (parsed from the exchange's decimal strings, so ``"0.10000000"`` equals ``"0.1"``); nothing is sorted
until a level list is asked for.
"""

from __future__ import annotations

import gzip
import heapq
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

#: one level, exact: (price, quantity)
Level = tuple[Decimal, Decimal]
#: one side of the book: price -> quantity
Side = dict[Decimal, Decimal]
BAND_10BPS = Decimal("0.001")


@dataclass(frozen=True)
class DepthEvent:
    """One ``depthUpdate`` event: its first and last update ids, its event time (ms) and its levels."""

    first_id: int
    last_id: int
    time_ms: int
    bids: list[list[str]]
    asks: list[list[str]]


@dataclass(frozen=True)
class Recording:
    """A Binance depth recording: its REST snapshot (``lastUpdateId``, ``bids``, ``asks``) and every event, in
    recorded order."""

    snapshot: dict[str, Any]
    events: list[DepthEvent]


@dataclass(frozen=True)
class State:
    """The book right after one event: the event's ``u`` and time, the top levels a side (best first) and the
    figures of the stored metrics that depend on the book's top only (the 1 % band depends on how deep a resync's
    snapshot reached, so it is not here)."""

    last_id: int
    time_ms: int
    bids: list[Level]
    asks: list[Level]
    best_bid: Decimal | None
    best_ask: Decimal | None
    spread: Decimal | None
    mid: Decimal | None
    bid_depth_10bps: Decimal | None
    ask_depth_10bps: Decimal | None


def read_recording(paths: Iterable[Path]) -> Recording:
    """The REST snapshot line and the ``depthUpdate`` events of Binance recordings (``<receive ns> <frame>`` lines,
    gzip or plain), in order; the first snapshot line found is the one used."""
    snapshot: dict[str, Any] | None = None
    events: list[DepthEvent] = []
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                _, _, frame = line.partition(" ")
                if frame.startswith('{"lastUpdateId"'):
                    snapshot = snapshot or json.loads(frame)
                    continue
                if '"depthUpdate"' not in frame:
                    continue
                message = json.loads(frame)
                data = message.get("data", message)
                if data.get("e") != "depthUpdate":
                    continue
                events.append(DepthEvent(int(data["U"]), int(data["u"]), int(data["E"]), data["b"], data["a"]))
    if snapshot is None:
        raise ValueError("the recording holds no REST snapshot line: the book cannot be rebuilt")
    return Recording(snapshot, events)


def apply_levels(side: Side, rows: Iterable[list[str]]) -> None:
    """Set each ``[price, qty]`` of ``rows`` (absolute quantities; 0 removes the level, absent or not)."""
    for price, qty in rows:
        quantity = Decimal(qty)
        if quantity == 0:
            side.pop(Decimal(price), None)
        else:
            side[Decimal(price)] = quantity


def top(side: Side, n: int, bids: bool) -> list[Level]:
    """The ``n`` best levels of ``side``, best first (highest bids, lowest asks)."""
    prices = heapq.nlargest(n, side) if bids else heapq.nsmallest(n, side)
    return [(p, side[p]) for p in prices]


def state(bids: Side, asks: Side, event: DepthEvent, depth: int) -> State:
    """The :class:`State` of the book ``bids``/``asks`` right after ``event``."""
    best_bid = max(bids) if bids else None
    best_ask = min(asks) if asks else None
    spread = mid = bid_band = ask_band = None
    if best_bid is not None and best_ask is not None:
        spread = best_ask - best_bid
        mid = (best_bid + best_ask) / 2
        low, high = mid * (1 - BAND_10BPS), mid * (1 + BAND_10BPS)
        bid_band = sum((q for p, q in bids.items() if p >= low), Decimal(0))
        ask_band = sum((q for p, q in asks.items() if p <= high), Decimal(0))
    return State(
        event.last_id,
        event.time_ms,
        top(bids, depth, True),
        top(asks, depth, False),
        best_bid,
        best_ask,
        spread,
        mid,
        bid_band,
        ask_band,
    )


class BookTruth:
    """The book of a :class:`Recording`, event by event, as Binance's procedure builds it."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.snapshot_id = int(recording.snapshot["lastUpdateId"])
        #: the events applied after the snapshot, in order (the ones it already holds left out)
        self.applied = [e for e in recording.events if e.last_id > self.snapshot_id]
        if not self.applied:
            raise ValueError("no event after the snapshot")
        first = self.applied[0]
        if not first.first_id <= self.snapshot_id + 1 <= first.last_id:
            raise ValueError(
                f"the first event after the snapshot ({first.first_id}..{first.last_id}) does not bridge it"
            )
        for before, after in zip(self.applied, self.applied[1:], strict=False):
            if after.first_id != before.last_id + 1:
                raise ValueError(f"the recording has a hole: {before.last_id} then {after.first_id}")

    @property
    def final(self) -> DepthEvent:
        """The recording's last event."""
        return self.applied[-1]

    def walk(self) -> Iterator[tuple[DepthEvent, Side, Side]]:
        """Each applied event with the book right after it (the same dicts, changed in place: read, do not keep)."""
        bids: Side = {}
        asks: Side = {}
        apply_levels(bids, self.recording.snapshot["bids"])
        apply_levels(asks, self.recording.snapshot["asks"])
        for event in self.applied:
            apply_levels(bids, event.bids)
            apply_levels(asks, event.asks)
            yield event, bids, asks

    def states(self, ids: Iterable[int], depth: int) -> dict[int, State]:
        """The book right after each event whose ``u`` is in ``ids`` (an id that is no event's ``u`` is absent)."""
        wanted = set(ids)
        return {e.last_id: state(b, a, e, depth) for e, b, a in self.walk() if e.last_id in wanted}

    def windows(self, every_ms: int) -> dict[int, int]:
        """Per window of event time (its start, epoch ms, windows ``every_ms`` long), the ``u`` of its last event:
        the rows a consumer that held the book throughout must store."""
        return {e.time_ms - e.time_ms % every_ms: e.last_id for e in self.applied}
