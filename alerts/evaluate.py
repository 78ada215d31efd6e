"""Evaluating the trade kinds of alert rules (``price_cross``, ``pct_move``, ``whale``) on one market's new trades.

Pure and vectorised: no database, no Django. :class:`MarketRules` holds a market's rules as arrays (compiled once per
rule refresh) and their state; :func:`evaluate` takes the trades one store transaction inserted for that market and
returns the firings, the rules' new state and the new price window, without changing its inputs (the caller swaps
the new state in once the transaction committed, so a rolled-back batch leaves no trace).

Prices are decimal text. Comparisons are exact: floats decide every case where they are unambiguous (correctly
rounded conversion is monotonic, so ``float(a) < float(b)`` implies ``a < b``), and the few near-ties are decided
with :class:`~decimal.Decimal`. The exact semantics of each kind: docs/ALERTS.md ("Kinds").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
#: decimal texts in an object array: masks and slices copy references in C, not in a Python loop
Texts = npt.NDArray[np.object_]

#: relative distance under which two float results are treated as a possible tie and decided exactly
_NEAR = 1e-9
#: a position relative to a level nobody has seen yet (a rule's first trade)
UNSEEN = 2


@dataclass(frozen=True)
class Trades:
    """One market's trades in trade-id order: ids, prices (text and float), quantities, times (ms), taker side."""

    trade_id: I64
    price_text: list[str]
    price: F64
    quantity_text: list[str]
    quantity: F64
    time_ms: I64
    is_buyer_maker: Bools

    @classmethod
    def from_lists(
        cls,
        trade_ids: Sequence[int],
        prices: Sequence[str],
        quantities: Sequence[str],
        times_ms: Sequence[int],
        is_buyer_maker: Sequence[bool],
    ) -> Trades:
        """Build from parallel lists in any order (sorted here by trade id)."""
        ids = np.asarray(trade_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        ordered = order.tolist()
        price_text = [prices[i] for i in ordered]
        quantity_text = [quantities[i] for i in ordered]
        return cls(
            trade_id=ids[order],
            price_text=price_text,
            price=np.fromiter(map(float, price_text), np.float64, len(price_text)),
            quantity_text=quantity_text,
            quantity=np.fromiter(map(float, quantity_text), np.float64, len(quantity_text)),
            time_ms=np.asarray(times_ms, dtype=np.int64)[order],
            is_buyer_maker=np.asarray(is_buyer_maker, dtype=np.bool_)[order],
        )

    def __len__(self) -> int:
        return len(self.trade_id)


@dataclass(frozen=True)
class Marks:
    """Suffix-extreme records of the trades a market's pct_move rules saw, oldest first: a trade is kept while no
    later trade is lower (``lows``; higher for ``highs``). The lowest price of the trades from any point on is then
    the first record at or after that point, so a window's extreme needs the records only, not every trade."""

    trade_id: I64
    time_ms: I64
    price: F64
    text: Texts

    @classmethod
    def empty(cls) -> Marks:
        """No trade yet."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.object_))

    def __len__(self) -> int:
        return len(self.trade_id)

    def then(self, ids: I64, times: I64, prices: F64, texts: list[str], lowest: bool, keep_from_ms: int) -> Marks:
        """These records after the trades (``ids``...: trade-id order, times made monotonic), without those traded
        before ``keep_from_ms`` (no later window reaches them)."""
        if len(prices):
            bound = prices.min() if lowest else prices.max()
            # An older record stays one while no new trade is lower (the earliest extreme wins ties).
            old = self.price <= bound if lowest else self.price >= bound
            new = _records(prices, lowest)
            merged = Marks(
                np.concatenate([self.trade_id[old], ids[new]]),
                np.concatenate([self.time_ms[old], times[new]]),
                np.concatenate([self.price[old], prices[new]]),
                np.concatenate([self.text[old], np.array([texts[i] for i in new.tolist()], np.object_)]),
            )
        else:
            merged = self
        first = int(np.searchsorted(merged.time_ms, keep_from_ms, side="left"))
        if not first:
            return merged
        return Marks(merged.trade_id[first:], merged.time_ms[first:], merged.price[first:], merged.text[first:])


def _records(prices: F64, lowest: bool) -> I64:
    """Positions of ``prices`` holding the extreme of their suffix (not above any later price, for lows)."""
    if not len(prices):
        return np.zeros(0, np.int64)
    suffix = (np.minimum if lowest else np.maximum).accumulate(prices[::-1])[::-1]
    return np.flatnonzero(prices == suffix)


#: the time of "no trade seen yet"
NO_TIME = -(2**62)


@dataclass(frozen=True)
class Window:
    """What a market's pct_move rules look back on: the lows' and highs' records, and the last trade time seen."""

    lows: Marks
    highs: Marks
    last_ms: int = NO_TIME

    @classmethod
    def empty(cls) -> Window:
        """No trade yet."""
        return cls(Marks.empty(), Marks.empty())

    @classmethod
    def of(cls, ids: I64, times: I64, prices: F64, texts: list[str], span_ms: int) -> Window:
        """The window of stored trades (trade-id order), e.g. rebuilt after a restart."""
        return cls.empty().then(ids, times, prices, texts, span_ms)

    def then(self, ids: I64, times: I64, prices: F64, texts: list[str], span_ms: int) -> Window:
        """This window after the trades (times made monotonic with :meth:`clamp`)."""
        times = self.clamp(times)
        if not len(times):
            return self
        keep = int(times[-1]) - span_ms
        return Window(
            self.lows.then(ids, times, prices, texts, True, keep),
            self.highs.then(ids, times, prices, texts, False, keep),
            int(times[-1]),
        )

    def clamp(self, times: I64) -> I64:
        """Trade times made non-decreasing in trade-id order (a trade stamped earlier than one before it counts at
        that one's time)."""
        if not len(times):
            return times
        return np.maximum.accumulate(np.concatenate([np.array([self.last_ms], np.int64), times]))[1:]


@dataclass(frozen=True)
class Rule:
    """One active rule as the evaluator needs it (parameters parsed and checked by :func:`parse_rule`)."""

    id: int
    owner_id: int
    kind: str
    exchange: str
    symbol: str
    params: dict[str, Any]
    cooldown_ms: int = 0
    channels: tuple[str, ...] = ()
    destination_ids: tuple[int, ...] = ()
    # parsed parameters
    level: Decimal | None = None
    direction: str = "both"
    pct: Decimal | None = None
    window_ms: int = 0
    min_notional: Decimal | None = None


@dataclass(frozen=True)
class RuleState:
    """What a rule keeps between batches (persisted in ``AlertRule.state``, ``last_fired_ms``, ``suppressed``)."""

    #: price_cross: where the last trade it saw stood against the level (-1 below, 0 at, 1 above, UNSEEN: none)
    pos: int = UNSEEN
    #: pct_move: the first trade id it saw (its window never reaches before), and whether each condition held
    since_id: int | None = None
    up_on: bool = False
    down_on: bool = False
    last_fired_ms: int | None = None
    #: firings the cooldown suppressed in this batch (added to the stored count)
    suppressed: int = 0

    def to_json(self, kind: str) -> dict[str, Any]:
        """The kind's part of the state, for ``AlertRule.state``."""
        if kind == "price_cross":
            return {"pos": self.pos}
        if kind == "pct_move":
            return {"since_id": self.since_id, "up_on": self.up_on, "down_on": self.down_on}
        return {}

    @classmethod
    def from_json(cls, data: dict[str, Any], last_fired_ms: int | None) -> RuleState:
        """The state stored by :meth:`to_json` (missing keys: a fresh rule)."""
        return cls(
            pos=int(data.get("pos", UNSEEN)),
            since_id=data.get("since_id"),
            up_on=bool(data.get("up_on", False)),
            down_on=bool(data.get("down_on", False)),
            last_fired_ms=last_fired_ms,
        )


#: the state of a rule that saw nothing yet (shared: states are immutable)
FRESH = RuleState()


@dataclass(frozen=True)
class Firing:
    """A rule fired on a trade (before the cooldown decided whether it is stored)."""

    rule_id: int
    index: int  # the trade's position in the batch
    what: str  # e.g. "up", "down", "whale"
    reference: str | None = None  # pct_move: the window's lowest/highest price; whale: the threshold


@dataclass
class Outcome:
    """What one market's batch did: kept firings (after cooldowns), every rule's new state, and the new window."""

    firings: list[Firing] = field(default_factory=list)
    states: dict[int, RuleState] = field(default_factory=dict)
    window: Window | None = None


class RuleError(ValueError):
    """A rule's parameters are invalid (the rule is skipped, never the batch)."""


def _decimal(value: Any, name: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except Exception as exc:  # decimal raises several types; all mean "not a number"
        raise RuleError(f"{name} is not a decimal: {value!r}") from exc
    if not out.is_finite():
        raise RuleError(f"{name} is not finite: {value!r}")
    return out


def parse_rule(
    rule_id: int,
    owner_id: int,
    kind: str,
    exchange: str,
    symbol: str,
    params: dict[str, Any],
    cooldown_s: int = 0,
    channels: Iterable[str] = (),
    destination_ids: Iterable[int] = (),
) -> Rule:
    """A :class:`Rule` with its parameters checked; raises :class:`RuleError`."""
    base = Rule(
        rule_id,
        owner_id,
        kind,
        exchange,
        symbol,
        dict(params),
        int(cooldown_s) * 1000,
        tuple(channels),
        tuple(sorted(destination_ids)),
    )
    direction = str(params.get("direction", "both"))
    if kind in ("price_cross", "pct_move") and direction not in ("up", "down", "both"):
        raise RuleError(f"direction must be up, down or both: {direction!r}")
    if kind == "price_cross":
        level = _decimal(params.get("level"), "level")
        if level <= 0:
            raise RuleError("level must be positive")
        return replace(base, level=level, direction=direction)
    if kind == "pct_move":
        pct = _decimal(params.get("pct"), "pct")
        if not 0 < pct < 100:
            raise RuleError("pct must be between 0 and 100")
        try:
            window_s = int(params.get("window_s", 0))
        except (TypeError, ValueError) as exc:
            raise RuleError("window_s must be an integer") from exc
        if window_s < 1:
            raise RuleError("window_s must be at least 1")
        return replace(base, pct=pct, window_ms=window_s * 1000, direction=direction)
    if kind == "whale":
        raw = params.get("min_notional")
        minimum = None if raw in (None, "") else _decimal(raw, "min_notional")
        if minimum is not None and minimum <= 0:
            raise RuleError("min_notional must be positive")
        return replace(base, min_notional=minimum)
    raise RuleError(f"not a trade kind: {kind!r}")


@dataclass(frozen=True)
class MarketRules:
    """A market's trade-kind rules, compiled into arrays per kind."""

    cross: list[Rule]
    cross_level: F64
    cross_up: Bools
    cross_down: Bools
    moves: list[Rule]
    whales: list[Rule]
    #: pct_move rules as arrays: whether each watches up/down moves, its window (ms) and its up/down factors
    move_up: Bools = field(default_factory=lambda: np.zeros(0, np.bool_))
    move_down: Bools = field(default_factory=lambda: np.zeros(0, np.bool_))
    move_window: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    move_factor_up: F64 = field(default_factory=lambda: np.zeros(0, np.float64))
    move_factor_down: F64 = field(default_factory=lambda: np.zeros(0, np.float64))

    @classmethod
    def compile(cls, rules: Iterable[Rule]) -> MarketRules:
        """Group ``rules`` by kind (ordered by id)."""
        ordered = sorted(rules, key=lambda r: r.id)
        cross = [r for r in ordered if r.kind == "price_cross"]
        moves = [r for r in ordered if r.kind == "pct_move"]
        return cls(
            cross=cross,
            cross_level=np.array([float(r.level or 0) for r in cross], np.float64),
            cross_up=np.array([r.direction in ("up", "both") for r in cross], np.bool_),
            cross_down=np.array([r.direction in ("down", "both") for r in cross], np.bool_),
            moves=moves,
            whales=[r for r in ordered if r.kind == "whale"],
            move_up=np.array([r.direction in ("up", "both") for r in moves], np.bool_),
            move_down=np.array([r.direction in ("down", "both") for r in moves], np.bool_),
            move_window=np.array([r.window_ms for r in moves], np.int64),
            move_factor_up=np.array([1 + float(r.pct or 0) / 100 for r in moves], np.float64),
            move_factor_down=np.array([1 - float(r.pct or 0) / 100 for r in moves], np.float64),
        )

    @functools.cached_property
    def whale_limit(self) -> F64:
        """Each whale rule's own minimum notional as a float (NaN: the market's threshold)."""
        return np.array([float(r.min_notional) if r.min_notional else np.nan for r in self.whales], np.float64)

    @functools.cached_property
    def cooldowns(self) -> dict[int, int]:
        """Each rule's cooldown (ms), by rule id."""
        return {r.id: r.cooldown_ms for r in (*self.cross, *self.moves, *self.whales)}

    @functools.cached_property
    def ids(self) -> frozenset[int]:
        """The ids of the market's rules."""
        return frozenset(self.cooldowns)

    @functools.cached_property
    def window_ms(self) -> int:
        """How much trade time the market's price window must keep (0: no pct_move rule)."""
        return max((r.window_ms for r in self.moves), default=0)

    def __bool__(self) -> bool:
        return bool(self.cross or self.moves or self.whales)


# ------------------------------------------------------------------------------------------------- exact compares
def _sign_vs_levels(prices: F64, texts: list[str], levels: F64, exact: list[Decimal]) -> npt.NDArray[np.int8]:
    """sign(price - level) for every (level, price): a (levels x prices) matrix, exact."""
    p = prices[None, :]
    lv = levels[:, None]
    out = (p > lv).astype(np.int8) - (p < lv).astype(np.int8)
    for r, j in zip(*np.nonzero(p == lv), strict=True):  # float ties: decide in decimal
        d = Decimal(texts[j]) - exact[r]
        out[r, j] = 1 if d > 0 else (-1 if d < 0 else 0)
    return out


def _ge_ratio(lhs: F64, rhs: F64, exact: Any, rows: int) -> Bools:
    """``lhs >= rhs`` elementwise (broadcast to ``rows`` rows); near-ties decided by ``exact(r, j)``."""
    lhs_b, rhs_b = np.broadcast_arrays(lhs, rhs)
    out = lhs_b >= rhs_b
    near = np.abs(lhs_b - rhs_b) <= _NEAR * np.maximum(np.abs(lhs_b), np.abs(rhs_b))
    for r, j in zip(*np.nonzero(near), strict=True):
        out[r, j] = exact(int(r), int(j))
    return np.asarray(out, np.bool_).reshape(rows, -1)


# ------------------------------------------------------------------------------------------------- the kinds
def _price_cross(market: MarketRules, trades: Trades, states: dict[int, RuleState], out: list[Firing]) -> None:
    if not market.cross:
        return
    exact = [r.level or Decimal(0) for r in market.cross]
    pos = _sign_vs_levels(trades.price, trades.price_text, market.cross_level, exact)
    first = np.array([states[r.id].pos for r in market.cross], np.int8)
    prev = np.concatenate([first[:, None], pos[:, :-1]], axis=1)
    up = (pos >= 0) & (prev == -1) & market.cross_up[:, None]
    down = (pos <= 0) & (prev == 1) & market.cross_down[:, None]
    for r, j in zip(*np.nonzero(up | down), strict=True):
        out.append(Firing(market.cross[r].id, int(j), "up" if up[r, j] else "down"))
    for r, rule in enumerate(market.cross):
        states[rule.id] = replace(states[rule.id], pos=int(pos[r, -1]))


class _RangeBest:
    """Index of the lowest (or highest) value in ``values[lo:hi]``: a sparse table built once per batch and market
    (levels up to the longest range asked), then answered for many ranges at once."""

    def __init__(self, values: F64, lowest: bool, longest: int) -> None:
        self.values, self.lowest = values, lowest
        n = len(values)
        self.levels = [np.arange(n, dtype=np.int64)]
        step = 1
        while step * 2 <= max(1, longest):
            prev = self.levels[-1]
            a, b = prev[: n - step * 2 + 1], prev[step : step + n - step * 2 + 1]
            self.levels.append(np.where(self._better(a, b), a, b))
            step *= 2

    def _better(self, a: I64, b: I64) -> Bools:
        # Ties keep the earlier trade: the reference is then the first trade at that price.
        return self.values[a] <= self.values[b] if self.lowest else self.values[a] >= self.values[b]

    def __call__(self, lo: I64, hi: I64) -> I64:
        """Best index of each ``[lo, hi)`` (every ``hi > lo``)."""
        k = np.floor(np.log2(np.maximum(hi - lo, 1))).astype(np.int64)
        out = np.empty(len(lo), np.int64)
        for level in np.unique(k):
            sel = k == level
            table = self.levels[int(level)]
            a, b = table[lo[sel]], table[hi[sel] - (1 << int(level))]
            out[sel] = np.where(self._better(a, b), a, b)
        return out


def _prefix_arg(prices: F64, lowest: bool) -> I64:
    """Index of the earliest extreme of ``prices[: k + 1]`` for every k."""
    if not len(prices):
        return np.zeros(0, np.int64)
    prefix = (np.minimum if lowest else np.maximum).accumulate(prices)
    record = np.concatenate([[True], prices[1:] < prefix[:-1] if lowest else prices[1:] > prefix[:-1]])
    return np.maximum.accumulate(np.where(record, np.arange(len(prices)), 0))


def _pct_move(
    market: MarketRules, trades: Trades, window: Window, states: dict[int, RuleState], out: list[Firing]
) -> Window:
    """Evaluate the pct_move rules on ``trades`` after ``window``; return the window after them.

    One (rules x trades) matrix per direction, whatever the rules' windows. The extreme of a trade's window joins
    the extreme of the earlier batches' trades in it (the first record at or after the window's start, and at or
    after the rule's first trade) with that of the batch's trades before it (a prefix extreme; a sparse table when
    the window starts inside the batch)."""
    rules = market.moves
    n = len(trades)
    times = window.clamp(trades.time_ms)
    first_new = int(trades.trade_id[0])
    position = np.arange(n, dtype=np.int64)
    spans = np.array([r.window_ms for r in rules], np.int64)[:, None]
    target = times[None, :] - spans
    lo_new = np.searchsorted(times, target, side="left").astype(np.int64)
    since = np.array(
        [states[r.id].since_id if states[r.id].since_id is not None else first_new for r in rules], np.int64
    )
    held: dict[bool, Bools] = {}
    refs: dict[bool, Callable[[int, int], str]] = {}
    for up in (True, False):
        marks = window.lows if up else window.highs
        held[up], refs[up] = _move_condition(rules, up, trades, marks, target, lo_new, since, position)
    was_up = np.array([states[r.id].up_on for r in rules], np.bool_)[:, None]
    was_down = np.array([states[r.id].down_on for r in rules], np.bool_)[:, None]
    fire_up = held[True] & ~np.concatenate([was_up, held[True][:, :-1]], axis=1)
    fire_down = held[False] & ~np.concatenate([was_down, held[False][:, :-1]], axis=1)
    for r, j in zip(*np.nonzero(fire_up), strict=True):
        out.append(Firing(rules[r].id, int(j), "up", refs[True](int(r), int(j))))
    for r, j in zip(*np.nonzero(fire_down), strict=True):
        out.append(Firing(rules[r].id, int(j), "down", refs[False](int(r), int(j))))
    last_up, last_down = held[True][:, -1].tolist(), held[False][:, -1].tolist()
    for r, rule in enumerate(rules):
        states[rule.id] = replace(states[rule.id], since_id=int(since[r]), up_on=last_up[r], down_on=last_down[r])
    return window.then(trades.trade_id, trades.time_ms, trades.price, trades.price_text, market.window_ms)


def _move_condition(
    rules: Sequence[Rule],
    up: bool,
    trades: Trades,
    marks: Marks,
    target: I64,
    lo_new: I64,
    since: I64,
    position: I64,
) -> tuple[Bools, Callable[[int, int], str]]:
    """(rules x trades) whether the up (down) move holds, and the reference price's text of a (rule, trade).
    ``target``/``lo_new``: (rules x trades) each window's start time and first trade of the batch in it."""
    n, prices = len(trades), trades.price
    shape = (len(rules), n)
    wants = np.array([r.direction in (("up", "both") if up else ("down", "both")) for r in rules], np.bool_)
    # The batch's part of each window: the prefix before the trade, or [lo_new, j) when the window starts inside it.
    new_ref = np.full(shape, -1, np.int64)
    prefix = (lo_new == 0) & (position > 0)[None, :]
    if prefix.any():
        new_ref[prefix] = np.broadcast_to(_prefix_arg(prices, up)[np.maximum(position - 1, 0)], shape)[prefix]
    inner = (lo_new > 0) & (lo_new < position[None, :])
    if inner.any():
        new_ref[inner] = _RangeBest(prices, up, n)(lo_new[inner], np.broadcast_to(position, shape)[inner])
    # The earlier batches' part (only when the window starts before the batch), per rule: at or after its first trade.
    i_old = np.maximum(
        np.searchsorted(marks.time_ms, target, side="left"),
        np.searchsorted(marks.trade_id, since, side="left")[:, None],
    )
    old_ok = (i_old < len(marks)) & (lo_new == 0)
    if len(marks):
        old_val = np.where(old_ok, marks.price[np.minimum(i_old, len(marks) - 1)], np.nan)
    else:
        old_val = np.full(shape, np.nan)
    new_ok = new_ref >= 0
    new_val = np.where(new_ok, prices[np.maximum(new_ref, 0)], np.nan)
    with np.errstate(invalid="ignore"):
        better = (new_val < old_val) if up else (new_val > old_val)
    use_new = new_ok & (~old_ok | better)  # the earlier trade wins ties
    ref_val = np.where(use_new, new_val, old_val)
    has = (old_ok | new_ok) & wants[:, None]

    def ref_text(r: int, j: int) -> str:
        return trades.price_text[int(new_ref[r, j])] if use_new[r, j] else marks.text[int(i_old[r, j])]

    if not has.any():
        return np.zeros(shape, np.bool_), ref_text
    pcts = [r.pct or Decimal(0) for r in rules]
    sign = 1 if up else -1
    factor = np.array([1 + sign * float(p) / 100 for p in pcts], np.float64)[:, None]
    price = prices[None, :]
    reference = np.where(has, factor * ref_val, np.nan)

    def exact(r: int, j: int) -> bool:
        with localcontext() as ctx:
            ctx.prec = 60
            p100, base = Decimal(trades.price_text[j]) * 100, Decimal(ref_text(r, j))
            return p100 >= (100 + pcts[r]) * base if up else (100 - pcts[r]) * base >= p100

    with np.errstate(invalid="ignore"):
        cond = _ge_ratio(price, reference, exact, len(rules)) if up else _ge_ratio(reference, price, exact, len(rules))
    return cond & has, ref_text


def _whale(market: MarketRules, trades: Trades, threshold: Decimal, out: list[Firing]) -> None:
    if not market.whales:
        return
    limits = [rule.min_notional or threshold for rule in market.whales]
    notional = (trades.price * trades.quantity)[None, :]

    def exact(r: int, j: int) -> bool:
        with localcontext() as ctx:
            ctx.prec = 60
            return Decimal(trades.price_text[j]) * Decimal(trades.quantity_text[j]) >= limits[r]

    limit_f = np.array([float(limit) for limit in limits], np.float64)[:, None]
    hit = _ge_ratio(notional, limit_f, exact, len(limits))
    for r, j in zip(*np.nonzero(hit), strict=True):
        out.append(Firing(market.whales[r].id, int(j), "whale", str(limits[r])))


# ------------------------------------------------------------------------------------------------- entry point
def apply_cooldowns(
    firings: list[Firing], trades: Trades, rules: dict[int, Rule], states: dict[int, RuleState]
) -> list[Firing]:
    """Drop (and count) the firings within a rule's cooldown of its previous kept one, in trade order."""
    kept: list[Firing] = []
    for firing in sorted(firings, key=lambda f: (f.rule_id, f.index)):
        state = states[firing.rule_id]
        t = int(trades.time_ms[firing.index])
        cooldown = rules[firing.rule_id].cooldown_ms
        if state.last_fired_ms is not None and cooldown and t < state.last_fired_ms + cooldown:
            states[firing.rule_id] = replace(state, suppressed=state.suppressed + 1)
            continue
        states[firing.rule_id] = replace(state, last_fired_ms=t)
        kept.append(firing)
    return kept


def evaluate(
    market: MarketRules,
    trades: Trades,
    states: dict[int, RuleState],
    window: Window | None = None,
    whale_threshold: Decimal = Decimal("100000"),
) -> Outcome:
    """Evaluate ``market``'s rules on ``trades`` (new trades, trade-id order) from ``states`` (every rule's, missing:
    fresh; ``suppressed`` counts on from the given value); ``window``: the earlier trades pct_move rules look back
    on. Inputs are left unchanged; the outcome holds the new state of every rule of the market."""
    new_states = {r.id: states.get(r.id, FRESH) for r in (*market.cross, *market.moves, *market.whales)}
    if not len(trades):
        return Outcome([], new_states, window)
    found: list[Firing] = []
    _price_cross(market, trades, new_states, found)
    new_window = None
    if market.moves:
        new_window = _pct_move(market, trades, window if window is not None else Window.empty(), new_states, found)
    _whale(market, trades, whale_threshold, found)
    rules = {r.id: r for r in (*market.cross, *market.moves, *market.whales)}
    # A trade fires a rule once: a pct_move "both" whose up and down moves start on the same trade fires up.
    once = list({(f.rule_id, f.index): f for f in reversed(found)}.values())
    kept = apply_cooldowns(once, trades, rules, new_states)
    return Outcome(kept, new_states, new_window)
