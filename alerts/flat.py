"""The trade kinds evaluated for a whole batch at once: every market's rules and trades in one set of array
operations, so the cost per batch does not grow with a Python loop over markets or rules.

Same semantics and results as :func:`alerts.evaluate.evaluate` applied market after market (the tests compare them):
each (rule, market) pair is an *instance* over its market's trades; the instances' (rule, trade) pairs are laid out
one after the other in flat arrays (``pair_inst``, ``pair_trade``), the previous-trade comparisons shift along them,
and each instance's first pair takes its previous value from the rule's state. Markets are kept apart in sorted
searches by offsetting their keys (``segment x BIG``), and in running extremes by offsetting price ranks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext
from typing import Any

import numpy as np

from alerts.evaluate import (
    F64,
    FRESH,
    I64,
    UNSEEN,
    Bools,
    Firing,
    MarketRules,
    Marks,
    Outcome,
    Rule,
    RuleState,
    Trades,
    Window,
    _RangeBest,
)

#: separates the markets' time keys (ms): far more than any window plus the span of one batch's trade times
_BIG = np.int64(1) << 43
_HALF = np.int64(1) << 41
_NEAR = 1e-9


@dataclass(frozen=True)
class Item:
    """One market of the batch: its compiled rules, new trades, pct_move window (None: none yet) and whale
    threshold."""

    rules: MarketRules
    trades: Trades
    window: Window | None
    threshold: Decimal


@dataclass
class _Flat:
    """The batch's trades of every market, one after the other."""

    items: Sequence[Item]
    start: I64 = field(init=False)
    length: I64 = field(init=False)
    price: F64 = field(init=False)
    texts: list[str] = field(init=False)
    quantity_texts: list[str] = field(init=False)
    quantity: F64 = field(init=False)
    time: I64 = field(init=False)
    trade_id: I64 = field(init=False)
    seg: I64 = field(init=False)

    def __post_init__(self) -> None:
        lengths = [len(i.trades) for i in self.items]
        self.length = np.array(lengths, np.int64)
        self.start = np.concatenate([[0], np.cumsum(self.length)[:-1]]).astype(np.int64)
        self.price = np.concatenate([i.trades.price for i in self.items])
        self.quantity = np.concatenate([i.trades.quantity for i in self.items])
        self.time = np.concatenate([i.trades.time_ms for i in self.items])
        self.trade_id = np.concatenate([i.trades.trade_id for i in self.items])
        self.texts = [t for i in self.items for t in i.trades.price_text]
        self.quantity_texts = [t for i in self.items for t in i.trades.quantity_text]
        self.seg = np.repeat(np.arange(len(self.items), dtype=np.int64), self.length)

    @functools.cached_property
    def rank(self) -> I64:
        """Each trade's price rank among the batch's prices (equal prices, equal ranks): sorted once per batch for
        the running extremes and the windows' records."""
        return np.unique(self.price, return_inverse=True)[1].astype(np.int64)


class _Pairs:
    """(instance, trade) pairs: instance i (segment ``inst_seg[i]``) over every trade of its segment."""

    def __init__(self, flat: _Flat, inst_seg: I64) -> None:
        self.inst_seg = inst_seg
        n = flat.length[inst_seg]
        self.first: I64 = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
        self.last: I64 = self.first + n - 1
        self.pair_inst: I64 = np.repeat(np.arange(len(inst_seg), dtype=np.int64), n)
        within = np.arange(int(n.sum()), dtype=np.int64) - self.first[self.pair_inst]
        self.pair_trade: I64 = flat.start[inst_seg][self.pair_inst] + within

    def previous(self, values: Any, initial: Any) -> Any:
        """Each pair's previous value along its instance; the instance's first pair takes ``initial``."""
        prev = np.empty_like(values)
        prev[1:] = values[:-1]
        prev[self.first] = initial
        return prev


def _ge(lhs: F64, rhs: F64, exact: Callable[[int], bool]) -> Bools:
    """``lhs >= rhs`` elementwise, near-ties decided by ``exact(k)``."""
    out = lhs >= rhs
    with np.errstate(invalid="ignore"):
        near = np.abs(lhs - rhs) <= _NEAR * np.maximum(np.abs(lhs), np.abs(rhs))
    for k in np.flatnonzero(near):
        out[k] = exact(int(k))
    return out


def evaluate_batch(items: Sequence[Item], states: dict[int, RuleState]) -> list[Outcome]:
    """Evaluate every market's rules on its new trades; one :class:`Outcome` per item (its kept firings, the new
    states of its rules that changed, its new window). ``states`` is left unchanged."""
    flat = _Flat(items)
    found: list[tuple[int, int, str, str | None]] = []  # (rule id, flat trade index, what, reference)
    new_states: dict[int, RuleState] = {}
    _cross(flat, states, new_states, found)
    windows = _moves(flat, states, new_states, found)
    _whales(flat, found)
    outcomes = [Outcome([], {}, windows[s]) for s in range(len(items))]
    # A trade fires a rule once (up first), then the cooldowns in trade order per rule (markets in batch order).
    once: dict[tuple[int, int], tuple[int, int, str, str | None]] = {}
    for f in found:
        once.setdefault((f[0], f[1]), f)
    for rule_id, k, what, ref in sorted(once.values(), key=lambda f: (f[0], f[1])):
        state = new_states.get(rule_id) or states.get(rule_id) or RuleState()
        t = int(flat.time[k])
        seg = int(flat.seg[k])
        cooldown = items[seg].rules.cooldowns[rule_id]
        if state.last_fired_ms is not None and cooldown and t < state.last_fired_ms + cooldown:
            new_states[rule_id] = replace(state, suppressed=state.suppressed + 1)
            continue
        new_states[rule_id] = replace(state, last_fired_ms=t)
        outcomes[seg].firings.append(Firing(rule_id, k - int(flat.start[seg]), what, ref))
    changed = new_states.keys()
    for s, item in enumerate(items):
        outcomes[s].states = {i: new_states[i] for i in sorted(changed & item.rules.ids)}
    return outcomes


def _instances(flat: _Flat, pick: Callable[[MarketRules], list[Rule]]) -> tuple[list[Rule], I64]:
    rules: list[Rule] = []
    segs: list[int] = []
    for s, item in enumerate(flat.items):
        chosen = pick(item.rules)
        rules.extend(chosen)
        segs.extend([s] * len(chosen))
    return rules, np.array(segs, np.int64)


def _cross(
    flat: _Flat,
    states: dict[int, RuleState],
    new_states: dict[int, RuleState],
    found: list[tuple[int, int, str, str | None]],
) -> None:
    """price_cross. A rule whose level lies outside its market's batch range (every trade strictly on one side, as
    floats, so exactly too) needs no pair: its position becomes that side and it fires at most on the first trade.
    The others go through their (rule, trade) pairs."""
    rules, segs = _instances(flat, lambda m: m.cross)
    if not rules:
        return
    present = sorted(set(segs.tolist()))
    level = np.concatenate([flat.items[s].rules.cross_level for s in present])
    up_ok = np.concatenate([flat.items[s].rules.cross_up for s in present])
    down_ok = np.concatenate([flat.items[s].rules.cross_down for s in present])
    old = np.array([states.get(r.id, FRESH).pos for r in rules], np.int8)
    top = np.maximum.reduceat(flat.price, flat.start)[segs]
    bottom = np.minimum.reduceat(flat.price, flat.start)[segs]
    below, above = top < level, bottom > level
    first = flat.start[segs]
    for i in np.flatnonzero(below & (old == 1) & down_ok):
        found.append((rules[int(i)].id, int(first[i]), "down", None))
    for i in np.flatnonzero(above & (old == -1) & up_ok):
        found.append((rules[int(i)].id, int(first[i]), "up", None))
    last = np.where(below, -1, np.where(above, 1, old)).astype(np.int8)
    straddle = np.flatnonzero(~(below | above))
    if len(straddle):
        sub = [rules[int(i)] for i in straddle]
        pairs = _Pairs(flat, segs[straddle])
        p, lv = flat.price[pairs.pair_trade], level[straddle][pairs.pair_inst]
        sign = (p > lv).astype(np.int8) - (p < lv).astype(np.int8)
        for k in np.flatnonzero(p == lv):  # float ties: decide in decimal
            d = Decimal(flat.texts[int(pairs.pair_trade[k])]) - (sub[int(pairs.pair_inst[k])].level or Decimal(0))
            sign[k] = 1 if d > 0 else (-1 if d < 0 else 0)
        prev = pairs.previous(sign, old[straddle])
        up = (sign >= 0) & (prev == -1) & up_ok[straddle][pairs.pair_inst]
        down = (sign <= 0) & (prev == 1) & down_ok[straddle][pairs.pair_inst]
        for k in np.flatnonzero(up | down):
            found.append((sub[int(pairs.pair_inst[k])].id, int(pairs.pair_trade[k]), "up" if up[k] else "down", None))
        last[straddle] = sign[pairs.last]
    for i in np.flatnonzero(last != old):
        rule = rules[int(i)]
        new_states[rule.id] = replace(states.get(rule.id, FRESH), pos=int(last[i]))


def _whales(flat: _Flat, found: list[tuple[int, int, str, str | None]]) -> None:
    rules, segs = _instances(flat, lambda m: m.whales)
    if not rules:
        return
    notional_all = flat.price * flat.quantity
    # Screen: a rule whose limit exceeds its market's largest notional of the batch (with a margin over float
    # rounding) fires nothing; only the others get (rule, trade) pairs.
    own = np.concatenate([flat.items[s].rules.whale_limit for s in sorted(set(segs.tolist()))])
    thresholds = np.array([float(item.threshold) for item in flat.items], np.float64)
    limit_all = np.where(np.isnan(own), thresholds[segs], own)
    largest = np.maximum.reduceat(notional_all, flat.start)[segs]
    kept = np.flatnonzero(limit_all <= largest * (1 + 1e-9))
    if not len(kept):
        return
    rules, segs = [rules[int(i)] for i in kept], segs[kept]
    limits = [r.min_notional or flat.items[int(s)].threshold for r, s in zip(rules, segs.tolist(), strict=True)]
    pairs = _Pairs(flat, segs)
    notional = notional_all[pairs.pair_trade]
    limit_f = limit_all[kept][pairs.pair_inst]

    def exact(k: int) -> bool:
        j, i = int(pairs.pair_trade[k]), int(pairs.pair_inst[k])
        with localcontext() as ctx:
            ctx.prec = 60
            return Decimal(flat.texts[j]) * Decimal(flat.quantity_texts[j]) >= limits[i]

    for k in np.flatnonzero(_ge(notional, limit_f, exact)):
        i = int(pairs.pair_inst[k])
        found.append((rules[i].id, int(pairs.pair_trade[k]), "whale", str(limits[i])))


def _segmented_prefix_arg(flat: _Flat, lowest: bool) -> I64:
    """For every trade, the flat index of the earliest extreme of its segment's trades up to it (included)."""
    rank = flat.rank
    span = np.int64(len(flat.price) + 1)
    count = np.int64(len(flat.items))
    # Earlier segments never win: larger keys for lows, smaller for highs.
    key = rank + (count - flat.seg) * span if lowest else rank + flat.seg * span
    run = (np.minimum if lowest else np.maximum).accumulate(key)
    record = np.ones(len(key), np.bool_)
    record[1:] = key[1:] < run[:-1] if lowest else key[1:] > run[:-1]
    return np.maximum.accumulate(np.where(record, np.arange(len(key)), 0))


def _moves(
    flat: _Flat,
    states: dict[int, RuleState],
    new_states: dict[int, RuleState],
    found: list[tuple[int, int, str, str | None]],
) -> list[Window | None]:
    windows: list[Window | None] = [None] * len(flat.items)
    rules, segs = _instances(flat, lambda m: m.moves)
    if not rules:
        return windows
    moving = sorted(set(segs.tolist()))
    olds = {s: flat.items[s].window or Window.empty() for s in moving}
    # Trade times made monotonic per market (from the window's last time), as keys increasing across markets.
    last = np.array([olds[s].last_ms if s in olds else -(2**62) for s in range(len(flat.items))], np.int64)
    t0 = np.int64(flat.time.min())
    shifted = np.maximum(flat.time, last[flat.seg]) - t0 + flat.seg * _BIG + _HALF
    key = np.maximum.accumulate(shifted)
    times = key - flat.seg * _BIG - _HALF + t0
    rules, segs, arrays = _screen(flat, rules, segs, moving, olds, states, new_states)
    if rules:
        _evaluate_moves(flat, rules, segs, arrays, olds, key, t0, states, new_states, found)
    ends = flat.start + flat.length - 1
    span = np.zeros(len(flat.items), np.int64)
    span[moving] = [flat.items[s].rules.window_ms for s in moving]
    keep_from = times[ends] - span  # as Window.then: no later window reaches before it
    lows = _next_marks(flat, moving, [olds[s].lows for s in moving], times, keep_from, True)
    highs = _next_marks(flat, moving, [olds[s].highs for s in moving], times, keep_from, False)
    for s, low, high in zip(moving, lows, highs, strict=True):
        windows[s] = Window(low, high, int(times[ends[s]]))
    return windows


def _next_marks(
    flat: _Flat, moving: list[int], marks: list[Marks], times: I64, keep_from: I64, lowest: bool
) -> list[Marks]:
    """:meth:`Marks.then` for every market of ``moving`` at once: the old records no new trade undercuts (for lows),
    then the batch's suffix extremes of each market, without those traded before the market's ``keep_from``."""
    o_seg = np.repeat(np.array(moving, np.int64), [len(m) for m in marks])
    bound = (np.minimum if lowest else np.maximum).reduceat(flat.price, flat.start)
    o_price = np.concatenate([m.price for m in marks])
    keep_old = o_price <= bound[o_seg] if lowest else o_price >= bound[o_seg]
    # Segmented suffix extremes: price ranks offset per market so that later markets never win (as in
    # _segmented_prefix_arg, read backwards).
    rank = flat.rank
    width = np.int64(len(flat.price) + 1)
    seg_key = flat.seg if lowest else np.int64(len(flat.items)) - flat.seg
    key = rank + seg_key * width
    extreme = (np.minimum if lowest else np.maximum).accumulate(key[::-1])[::-1]
    is_moving = np.zeros(len(flat.items), np.bool_)
    is_moving[moving] = True
    new = np.flatnonzero((key == extreme) & is_moving[flat.seg])
    seg = np.concatenate([o_seg[keep_old], flat.seg[new]])
    order = np.argsort(seg, kind="stable")  # per market: its old records first, then its new ones
    seg = seg[order]
    trade_id = np.concatenate([np.concatenate([m.trade_id for m in marks])[keep_old], flat.trade_id[new]])[order]
    time_ms = np.concatenate([np.concatenate([m.time_ms for m in marks])[keep_old], times[new]])[order]
    price = np.concatenate([o_price[keep_old], flat.price[new]])[order]
    texts = np.array([flat.texts[i] for i in new.tolist()], np.object_)
    text = np.concatenate([np.concatenate([m.text for m in marks])[keep_old], texts])[order]
    kept = time_ms >= keep_from[seg]  # times rise within a market: this drops a prefix, as Marks.then does
    seg, trade_id, time_ms, price, text = seg[kept], trade_id[kept], time_ms[kept], price[kept], text[kept]
    starts = np.searchsorted(seg, moving, side="left").tolist()
    stops = np.searchsorted(seg, moving, side="right").tolist()
    return [Marks(trade_id[a:b], time_ms[a:b], price[a:b], text[a:b]) for a, b in zip(starts, stops, strict=True)]


def _screen(
    flat: _Flat,
    rules: list[Rule],
    segs: I64,
    moving: list[int],
    olds: dict[int, Window],
    states: dict[int, RuleState],
    new_states: dict[int, RuleState],
) -> tuple[list[Rule], I64, dict[str, Any]]:
    """The pct_move instances to evaluate: those whose move can hold on some trade of the batch (the batch's highest
    price against the lowest of the market's window and batch, with a margin over float rounding), and fresh rules.
    The others fire nothing and hold nothing: a move that held before stops (its state says so)."""

    def cat(name: str) -> Any:
        return np.concatenate([getattr(flat.items[s].rules, name) for s in moving])

    arrays = {name: cat(name) for name in ("move_window", "move_up", "move_down", "move_factor_up", "move_factor_down")}
    top = np.maximum.reduceat(flat.price, flat.start)
    bottom = np.minimum.reduceat(flat.price, flat.start)
    lowest, highest = bottom.copy(), top.copy()
    for s in moving:
        lows, highs = olds[s].lows, olds[s].highs
        if len(lows):
            lowest[s] = min(lowest[s], lows.price[0])  # the first record is the lowest of them all
        if len(highs):
            highest[s] = max(highest[s], highs.price[0])
    can_up = arrays["move_up"] & (top[segs] >= arrays["move_factor_up"] * lowest[segs] * (1 - 1e-9))
    can_down = arrays["move_down"] & (bottom[segs] <= arrays["move_factor_down"] * highest[segs] * (1 + 1e-9))
    current = [states.get(r.id, FRESH) for r in rules]
    fresh = np.array([c.since_id is None for c in current], np.bool_)
    keep = can_up | can_down | fresh
    for i in np.flatnonzero(~keep):
        state = current[int(i)]
        if state.up_on or state.down_on:
            new_states[rules[int(i)].id] = replace(state, up_on=False, down_on=False)
    kept = np.flatnonzero(keep)
    return [rules[int(i)] for i in kept], segs[kept], {name: value[kept] for name, value in arrays.items()}


def _evaluate_moves(
    flat: _Flat,
    rules: list[Rule],
    segs: I64,
    arrays: dict[str, Any],
    olds: dict[int, Window],
    key: I64,
    t0: np.int64,
    states: dict[int, RuleState],
    new_states: dict[int, RuleState],
    found: list[tuple[int, int, str, str | None]],
) -> None:
    pairs = _Pairs(flat, segs)
    span = arrays["move_window"]
    target = key[pairs.pair_trade] - span[pairs.pair_inst]
    lo = np.searchsorted(key, target, side="left").astype(np.int64)  # first trade of the batch in the window
    pair_seg = segs[pairs.pair_inst]
    seg_start = flat.start[pair_seg]
    starts_before = lo == seg_start
    position = pairs.pair_trade
    first_new = np.array([int(flat.items[int(s)].trades.trade_id[0]) for s in segs], np.int64)
    since = np.array(
        [
            states.get(r.id, FRESH).since_id if states.get(r.id, FRESH).since_id is not None else f
            for r, f in zip(rules, first_new.tolist(), strict=True)
        ],
        np.int64,
    )
    held: dict[bool, Bools] = {}
    refs: dict[bool, Callable[[int], str]] = {}
    for up in (True, False):
        wants = arrays["move_up" if up else "move_down"]
        factor = arrays["move_factor_up" if up else "move_factor_down"]
        held[up], refs[up] = _move_condition(
            flat, rules, segs, pairs, olds, up, target, lo, starts_before, position, since, t0, wants, factor
        )
    was_up = np.array([states.get(r.id, FRESH).up_on for r in rules], np.bool_)
    was_down = np.array([states.get(r.id, FRESH).down_on for r in rules], np.bool_)
    fire_up = held[True] & ~pairs.previous(held[True], was_up)
    fire_down = held[False] & ~pairs.previous(held[False], was_down)
    for k in np.flatnonzero(fire_up):
        found.append((rules[int(pairs.pair_inst[k])].id, int(pairs.pair_trade[k]), "up", refs[True](int(k))))
    for k in np.flatnonzero(fire_down):
        found.append((rules[int(pairs.pair_inst[k])].id, int(pairs.pair_trade[k]), "down", refs[False](int(k))))
    up_last, down_last = held[True][pairs.last], held[False][pairs.last]
    changed = (up_last != was_up) | (down_last != was_down)
    changed |= np.array([states.get(r.id, FRESH).since_id is None for r in rules], np.bool_)
    for i in np.flatnonzero(changed):
        rule = rules[int(i)]
        new_states[rule.id] = replace(
            states.get(rule.id, FRESH),
            since_id=int(since[i]),
            up_on=bool(up_last[i]),
            down_on=bool(down_last[i]),
        )


def _move_condition(
    flat: _Flat,
    rules: list[Rule],
    segs: I64,
    pairs: _Pairs,
    olds: dict[int, Window],
    up: bool,
    target: I64,
    lo: I64,
    starts_before: Bools,
    position: I64,
    since: I64,
    t0: np.int64,
    wants: Bools,
    factor: F64,
) -> tuple[Bools, Callable[[int], str]]:
    """Per pair, whether the up (down) move holds, and the reference price's text of a pair."""
    prices = flat.price
    npairs = len(position)
    # The batch's part of each window: the market's trades before this one, or from ``lo`` when it starts inside.
    new_ref = np.full(npairs, -1, np.int64)
    seg_start = flat.start[segs[pairs.pair_inst]]
    prefix = starts_before & (position > seg_start)
    new_ref[prefix] = _segmented_prefix_arg(flat, up)[position[prefix] - 1]
    inner = ~starts_before & (lo < position)
    if inner.any():
        new_ref[inner] = _RangeBest(prices, up, len(prices))(lo[inner], position[inner])
    # The earlier batches' part: the market's records, concatenated in segment order with the same time keys.
    marks_of = [olds[s].lows if up else olds[s].highs for s in range(len(flat.items)) if s in olds]
    seg_list = [s for s in range(len(flat.items)) if s in olds]
    counts = np.array([len(m) for m in marks_of], np.int64)
    m_start = np.zeros(len(flat.items), np.int64)
    m_end = np.zeros(len(flat.items), np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    m_start[seg_list] = offsets[:-1]
    m_end[seg_list] = offsets[1:]
    m_seg = np.repeat(np.array(seg_list, np.int64), counts)
    all_marks = Marks(
        np.concatenate([m.trade_id for m in marks_of]),
        np.concatenate([m.time_ms for m in marks_of]),
        np.concatenate([m.price for m in marks_of]),
        np.concatenate([m.text for m in marks_of]),
    )
    m_key = all_marks.time_ms - t0 + m_seg * _BIG + _HALF
    i_old = np.searchsorted(m_key, target, side="left").astype(np.int64)
    # A rule's window never reaches before its first trade: per instance, the first record at or after it.
    first_ok = m_start[segs].copy()
    if len(all_marks):
        nonempty = m_end[segs] > m_start[segs]
        first_id = all_marks.trade_id[np.minimum(m_start[segs], len(all_marks) - 1)]
        for i in np.flatnonzero(nonempty & (since > first_id)):  # rules younger than their market's records
            a, b = int(m_start[segs[i]]), int(m_end[segs[i]])
            first_ok[i] = a + int(np.searchsorted(all_marks.trade_id[a:b], since[i], side="left"))
    i_old = np.maximum(i_old, first_ok[pairs.pair_inst])
    pair_end = m_end[segs[pairs.pair_inst]]
    old_ok = starts_before & (i_old < pair_end)
    old_val = np.full(npairs, np.nan)
    old_val[old_ok] = all_marks.price[i_old[old_ok]]
    new_ok = new_ref >= 0
    new_val = np.full(npairs, np.nan)
    new_val[new_ok] = prices[new_ref[new_ok]]
    with np.errstate(invalid="ignore"):
        better = (new_val < old_val) if up else (new_val > old_val)
    use_new = new_ok & (~old_ok | better)  # the earlier trade wins ties
    ref_val = np.where(use_new, new_val, old_val)
    has = (old_ok | new_ok) & wants[pairs.pair_inst]

    def ref_text(k: int) -> str:
        return flat.texts[int(new_ref[k])] if use_new[k] else all_marks.text[int(i_old[k])]

    if not has.any():
        return np.zeros(npairs, np.bool_), ref_text
    price = prices[position]
    reference = np.where(has, factor[pairs.pair_inst] * ref_val, np.nan)

    def exact(k: int) -> bool:
        pct = rules[int(pairs.pair_inst[k])].pct or Decimal(0)
        with localcontext() as ctx:
            ctx.prec = 60
            p100, base = Decimal(flat.texts[int(position[k])]) * 100, Decimal(ref_text(k))
            return p100 >= (100 + pct) * base if up else (100 - pct) * base >= p100

    cond = _ge(price, reference, exact) if up else _ge(reference, price, exact)
    return cond & has, ref_text


__all__ = ["UNSEEN", "Item", "evaluate_batch"]
