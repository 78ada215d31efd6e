"""The ground truth of a fault run, computed from the recorded files alone.

Nothing here imports the project: the recordings are parsed with the standard library, looped the way the
simulator's ``--loop`` documents it (each pass shifts ids past the previous pass's last id and times by the first
pass's span), cut at ``--max-trades``, and turned into the rows, 1-minute candles and whale alerts that the pipeline
must end up with. A bug in the project's parser, looping or candle code therefore cannot hide itself.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple


class Trade(NamedTuple):
    """One trade as the exchange printed it."""

    trade_id: int
    price: Decimal
    quantity: Decimal
    is_buyer_maker: bool
    time_ms: int


@dataclass(frozen=True)
class Bar:
    """A 1-minute candle: open, high, low, close, base volume and trade count."""

    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int


def binance_recording(path: Path) -> Iterator[Trade]:
    """The ``@trade`` events of a Binance combined-stream recording (``<receive ns> <frame>`` per line, gzip)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            _, _, frame = line.partition(" ")
            if '"@trade"' not in frame and "@trade" not in frame:
                continue
            message = json.loads(frame)
            if not str(message.get("stream", "")).endswith("@trade"):
                continue
            data = message["data"]
            yield Trade(int(data["t"]), Decimal(data["p"]), Decimal(data["q"]), bool(data["m"]), int(data["T"]))


def looped(trades: list[Trade], count: int) -> list[Trade]:
    """The first ``count`` trades of ``trades`` repeated: pass k adds k x the id span to ids, k x the time span to
    times (spans of the first pass: last - first + 1)."""
    if not trades:
        return []
    id_span = trades[-1].trade_id - trades[0].trade_id + 1
    time_span = max(t.time_ms for t in trades) - trades[0].time_ms + 1
    out: list[Trade] = []
    k = 0
    while len(out) < count:
        for t in trades:
            if len(out) == count:
                break
            out.append(t._replace(trade_id=t.trade_id + k * id_span, time_ms=t.time_ms + k * time_span))
        k += 1
    return out


def workload(paths: Iterable[Path], count: int) -> list[Trade]:
    """The trades the simulator offers for ``--replay paths --loop --max-trades count`` (one symbol)."""
    trades: list[Trade] = []
    for path in paths:
        trades.extend(binance_recording(path))
    return looped(trades, count)


def minute_bars(trades: Iterable[Trade]) -> dict[int, Bar]:
    """1-minute candles keyed by open time (epoch ms); trades ordered by (time, id) within a minute."""
    by_minute: dict[int, list[Trade]] = {}
    for t in trades:
        by_minute.setdefault(t.time_ms - t.time_ms % 60_000, []).append(t)
    bars: dict[int, Bar] = {}
    for minute, group in by_minute.items():
        group.sort(key=lambda t: (t.time_ms, t.trade_id))
        bars[minute] = Bar(
            open=group[0].price,
            high=max(t.price for t in group),
            low=min(t.price for t in group),
            close=group[-1].price,
            volume=sum((t.quantity for t in group), Decimal(0)),
            trades=len(group),
        )
    return bars


def whale_ids(trades: Iterable[Trade], threshold: Decimal) -> set[int]:
    """Ids of the trades whose notional (price x quantity) is at or above ``threshold``."""
    return {t.trade_id for t in trades if t.price * t.quantity >= threshold}
