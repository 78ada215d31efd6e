"""The bundled recordings' book frames, and reference books rebuilt with plain dicts (never :mod:`books`)."""

from __future__ import annotations

import gzip
from decimal import Decimal
from functools import cache
from typing import Any

import orjson

from tests.conftest import DATA
from tests.ingest.recordings import coinbase_frames

BINANCE_FILES = (DATA / "binance-spot-ws" / "btcusdt_20240808.gz", DATA / "binance-spot-ws" / "btcusdt_20240809.gz")
#: the one REST snapshot the Binance recording holds (``btcusdt_20240808.gz``, line 8)
BINANCE_SNAPSHOT_ID = 50093239218

#: a reference book side: price -> qty, both exact decimals
RefSide = dict[Decimal, Decimal]


@cache
def _binance_items() -> tuple[tuple[str, Any], ...]:
    items: list[tuple[str, Any]] = []
    for path in BINANCE_FILES:
        with gzip.open(path, "rb") as handle:
            for line in handle:
                _, _, frame = line.partition(b" ")
                if frame.startswith(b'{"lastUpdateId"'):
                    items.append(("snapshot", orjson.loads(frame)))
                elif frame.startswith(b'{"stream":"btcusdt@depth@100ms"'):
                    items.append(("delta", orjson.loads(frame)["data"]))
    return tuple(items)


def binance_items() -> list[tuple[str, Any]]:
    """The recording's depth events and its REST snapshot, in recorded order: ``("delta"|"snapshot", payload)``."""
    return list(_binance_items())


def binance_snapshot() -> dict[str, Any]:
    """The recording's REST snapshot."""
    return next(payload for kind, payload in _binance_items() if kind == "snapshot")


def binance_deltas() -> list[dict[str, Any]]:
    """Every depth event of both files, in order (they chain without a hole)."""
    return [payload for kind, payload in _binance_items() if kind == "delta"]


def apply_rows(side: RefSide, rows: list[list[str]]) -> None:
    """Set each ``[price, qty]``, zero deleting."""
    for price, qty in rows:
        if Decimal(qty) == 0:
            side.pop(Decimal(price), None)
        else:
            side[Decimal(price)] = Decimal(qty)


def binance_reference(through: int | None = None) -> tuple[RefSide, RefSide, int]:
    """The Binance book rebuilt independently: the REST snapshot, then every event after it, up to the event whose
    ``u`` is ``through`` (all of them without). Returns (bids, asks, last update id)."""
    snapshot = binance_snapshot()
    bids: RefSide = {}
    asks: RefSide = {}
    apply_rows(bids, snapshot["bids"])
    apply_rows(asks, snapshot["asks"])
    last = snapshot["lastUpdateId"]
    for event in binance_deltas():
        if event["u"] <= snapshot["lastUpdateId"]:
            continue
        apply_rows(bids, event["b"])
        apply_rows(asks, event["a"])
        last = event["u"]
        if last == through:
            break
    return bids, asks, last


def binance_snapshot_at(through: int) -> dict[str, Any]:
    """A REST snapshot as Binance would have served it once the event ending at ``through`` was applied."""
    bids, asks, last = binance_reference(through)
    return {
        "lastUpdateId": last,
        "bids": [[format(p, "f"), format(q, "f")] for p, q in sorted(bids.items(), reverse=True)],
        "asks": [[format(p, "f"), format(q, "f")] for p, q in sorted(asks.items())],
    }


def sorted_levels(bids: RefSide, asks: RefSide) -> dict[str, list[tuple[Decimal, Decimal]]]:
    """Both sides best first, for comparison with a book's levels."""
    return {"bids": sorted(bids.items(), reverse=True), "asks": sorted(asks.items())}


@cache
def _coinbase_messages() -> tuple[bytes, ...]:
    return tuple(frame.encode() for frame in coinbase_frames())


def coinbase_messages() -> list[dict[str, Any]]:
    """Every message of the recorded Advanced Trade connection, decoded (fresh dicts: tests may change them)."""
    return [orjson.loads(frame) for frame in _coinbase_messages()]


def coinbase_reference(messages: list[dict[str, Any]]) -> dict[str, tuple[RefSide, RefSide]]:
    """Each product's book rebuilt independently from the ``l2_data`` events of ``messages``."""
    books: dict[str, tuple[RefSide, RefSide]] = {}
    for message in messages:
        if message.get("channel") != "l2_data":
            continue
        for event in message["events"]:
            if event["type"] == "snapshot":
                books[event["product_id"]] = ({}, {})
            bids, asks = books[event["product_id"]]
            for update in event["updates"]:
                side = bids if update["side"] == "bid" else asks
                apply_rows(side, [[update["price_level"], update["new_quantity"]]])
    return books


def coinbase_snapshot_message(product: str, bids: RefSide, asks: RefSide, time: str) -> dict[str, Any]:
    """An ``l2_data`` snapshot message as a resubscription brings it (``sequence_num`` to be numbered)."""
    updates = [
        {"side": side, "event_time": time, "price_level": format(price, "f"), "new_quantity": format(qty, "f")}
        for side, levels in (("bid", sorted(bids.items(), reverse=True)), ("offer", sorted(asks.items())))
        for price, qty in levels
    ]
    return {
        "channel": "l2_data",
        "timestamp": time,
        "events": [{"type": "snapshot", "product_id": product, "updates": updates}],
    }


def numbered(messages: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    """The messages with consecutive ``sequence_num`` from ``start`` (as one connection would number them)."""
    return [{**message, "sequence_num": start + index} for index, message in enumerate(messages)]


class PartJoiner:
    """Joins the parts of a ``market.books`` snapshot sent in parts (``part: [index, count]``, consecutive per
    market), as a consumer must: call it with each message in topic order."""

    def __init__(self) -> None:
        """No part pending."""
        self.pending: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The message itself when whole, the joined snapshot (without ``part``) at its last part, else None."""
        part = message.get("part")
        if part is None:
            return message
        key = (message["exchange"], message["symbol"])
        index, count = part
        if index == 0:
            self.pending[key] = {k: v for k, v in message.items() if k != "part"}
            self.pending[key]["bids"] = list(message["bids"])
            self.pending[key]["asks"] = list(message["asks"])
        else:
            joined = self.pending[key]
            assert (joined["last_id"], joined["t"]) == (message["last_id"], message["t"]), "parts of two snapshots"
            joined["bids"] += message["bids"]
            joined["asks"] += message["asks"]
        return self.pending.pop(key) if index == count - 1 else None


def join_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with each snapshot sent in parts joined into one message."""
    joiner = PartJoiner()
    return [whole for whole in map(joiner, messages) if whole is not None]
