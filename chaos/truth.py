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
from typing import Any, NamedTuple


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


# --------------------------------------------------------------------------------------------- alert rules
# docs/ALERTS.md's semantics written again as plain loops over Decimals, never importing ``alerts``. A trade-kind
# rule sees the trades the consumer newly stores, batch after batch, each batch in trade-id order: ``seen`` is that
# sequence (trade-id order when every trade was stored in order; see :func:`seen_order`).


def seen_order(batches: Iterable[Iterable[int]]) -> list[int]:
    """The trade ids a rule sees: the store batches in the order they were stored, each in trade-id order."""
    return [i for batch in batches for i in sorted(batch)]


def price_cross_fires(seen: Iterable[Trade], level: Decimal, direction: str) -> dict[int, str]:
    """Trade id -> ``up``/``down`` for a ``price_cross`` rule: the first trade only sets the state; ``up`` fires at a
    price >= level after one < level, ``down`` at a price <= level after one > level."""
    fires: dict[int, str] = {}
    previous: Decimal | None = None
    for t in seen:
        if previous is not None:
            if direction in ("up", "both") and t.price >= level > previous:
                fires[t.trade_id] = "up"
            elif direction in ("down", "both") and t.price <= level < previous:
                fires[t.trade_id] = "down"
        previous = t.price
    return fires


def pct_move_fires(
    seen: Iterable[Trade], pct: Decimal, window_s: int, direction: str
) -> dict[int, tuple[str, Decimal]]:
    """Trade id -> (``up``/``down``, reference price) for a ``pct_move`` rule.

    Times are made non-decreasing in the order seen (a trade stamped before an earlier-seen one counts at that one's
    time). A trade's window is the trades seen before it whose time is >= its time - ``window_s``; the up move holds
    when 100 p >= (100 + pct) x the window's lowest price, the down move when 100 p <= (100 - pct) x its highest; a
    move fires where it starts to hold; up wins when both start on the same trade. Reference: the window's lowest
    (highest) price. The window is kept as two monotonic queues (earliest extreme first), which is what a scan of
    the window would find, in O(1) per trade."""
    span = window_s * 1000
    lows: list[tuple[int, Decimal]] = []  # (time, price), prices increasing: lows[head] is the window's lowest
    highs: list[tuple[int, Decimal]] = []
    low_head = high_head = 0
    last_ms: int | None = None
    was_up = was_down = False
    fires: dict[int, tuple[str, Decimal]] = {}
    for t in seen:
        ms = t.time_ms if last_ms is None else max(last_ms, t.time_ms)
        last_ms = ms
        while low_head < len(lows) and lows[low_head][0] < ms - span:
            low_head += 1
        while high_head < len(highs) and highs[high_head][0] < ms - span:
            high_head += 1
        low = lows[low_head][1] if low_head < len(lows) else None
        high = highs[high_head][1] if high_head < len(highs) else None
        up = low is not None and 100 * t.price >= (100 + pct) * low
        down = high is not None and 100 * t.price <= (100 - pct) * high
        if direction in ("up", "both") and up and not was_up:
            assert low is not None
            fires[t.trade_id] = ("up", low)
        elif direction in ("down", "both") and down and not was_down:
            assert high is not None
            fires[t.trade_id] = ("down", high)
        was_up, was_down = up, down
        # Later trades' windows: a price no lower than this one is never a lowest again (the earliest wins ties).
        while len(lows) > low_head and lows[-1][1] > t.price:
            lows.pop()
        lows.append((ms, t.price))
        while len(highs) > high_head and highs[-1][1] < t.price:
            highs.pop()
        highs.append((ms, t.price))
    return fires


def cooldown(
    fires: dict[int, Any], times: dict[int, int], seen_ids: Iterable[int], cooldown_s: int
) -> tuple[dict[int, Any], int]:
    """The firings a ``cooldown_s`` keeps (in the order seen: one at trade time t is dropped when t < the last kept
    one's time + cooldown), and how many it suppressed."""
    if not cooldown_s:
        return fires, 0
    kept: dict[int, Any] = {}
    last: int | None = None
    suppressed = 0
    for i in seen_ids:
        if i not in fires:
            continue
        if last is not None and times[i] < last + cooldown_s * 1000:
            suppressed += 1
            continue
        kept[i] = fires[i]
        last = times[i]
    return kept, suppressed


# --------------------------------------------------------------------------------------------- candle kinds
def volume_spike_fires(bars: dict[int, Bar], step_ms: int, factor: Decimal, n: int, since_ms: int | None) -> set[int]:
    """Open times (ms) of the candles a ``volume_spike`` rule fires on: each closed candle (a later one exists: the
    newest is still open) opened after ``since_ms`` (the newest closed candle when the rule started: None, it never
    started) whose ``n`` predecessors are exactly the candles 1..n intervals before it (no missing bar), when
    volume x n >= factor x their total volume."""
    if since_ms is None or not bars:
        return set()
    newest = max(bars)
    fires: set[int] = set()
    for open_ms, bar in bars.items():
        if open_ms <= since_ms or open_ms == newest:
            continue
        window = [open_ms - k * step_ms for k in range(1, n + 1)]
        if any(w not in bars for w in window):
            continue
        if bar.volume * n >= factor * sum((bars[w].volume for w in window), Decimal(0)):
            fires.add(open_ms)
    return fires
