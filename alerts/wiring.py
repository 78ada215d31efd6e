"""Alert rules evaluated inside the consumer's store transaction, exactly once (docs/ALERTS.md, "Exactly once").

:func:`on_trades_stored` receives :data:`analytics.signals.trades_stored` (connected in ``AlertsConfig.ready``) with
the rows the transaction actually inserted. It evaluates the rules held in memory by :class:`RuleBook` and writes,
in that same transaction and in a bounded number of statements per batch (not per rule, not per trade):

1. one version query (the row triggers raise on every change to the rules and their destinations): the book
   reloads only when it changed; and, when a whale rule uses them, one read of the per-symbol whale thresholds;
2. per market with ``pct_move`` rules whose window is not in memory (after a start, a reassignment or a rolled-back
   batch): one query for the stored trades of that window;
3. one ``INSERT ... ON CONFLICT (rule, trigger) DO NOTHING RETURNING`` of the alerts; ``notifications.outbox.enqueue``
   for the new ones only; one ``UPDATE ... FROM unnest(...)`` of the rules whose state, last firing or suppressed
   count changed.

A crash before the commit rolls trades, alerts, deliveries and rule states back together; the replayed batch then
inserts the trades again and fires them again. A trade already stored is not inserted, so it fires nothing. The
state in memory moves on only when the transaction committed (``on_commit``); otherwise it is reloaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connections, transaction
from django.db.backends.utils import CursorWrapper

from alerts.evaluate import (
    FRESH,
    MarketRules,
    Outcome,
    Rule,
    RuleError,
    RuleState,
    Trades,
    Window,
    parse_rule,
)
from alerts.flat import Item, evaluate_batch
from alerts.models import TRADE_KINDS, AlertRule
from analytics.queries import recent_prices
from analytics.storage import StoredTrades
from analytics.whales import threshold_overrides
from notifications.outbox import Message, Outgoing, enqueue

logger = logging.getLogger(__name__)

Market = tuple[str, str]

# Raised by triggers on every change to the rules or their destinations (alerts.models.RuleBookVersion): one row
# read, where counting the rules cost a scan of them per batch. No row yet: no rule was ever written.
_VERSION = "SELECT coalesce(max(version), 0) FROM alerts_rulebookversion"

INSERT_ALERTS = """
INSERT INTO alerts_alert (rule_id, kind, exchange, symbol, trigger, trade_id, price, traded_at, message, details)
SELECT v.rule_id, v.kind, v.exchange, v.symbol, v.trigger, v.trade_id, v.price::numeric,
       timestamptz 'epoch' + v.ms * interval '1 millisecond', v.message, v.details::jsonb
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::bigint[],
            %s::text[], %s::text[])
     AS v(rule_id, kind, exchange, symbol, trigger, trade_id, price, ms, message, details)
ON CONFLICT (rule_id, trigger) DO NOTHING
RETURNING id, rule_id, trigger
"""

# One JSON text parameter for every changed rule: adapting a few thousand list items client-side cost more than
# the update itself.
_UPDATE_RULES = """
UPDATE alerts_alertrule AS r
SET state = v.state, last_fired_ms = v.last_fired_ms, suppressed = r.suppressed + v.suppressed
FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, state jsonb, last_fired_ms bigint, suppressed bigint)
WHERE r.id = v.id
"""


def update_rules(cur: CursorWrapper, rows: Iterable[tuple[int, dict[str, Any], int | None, int]]) -> None:
    """Set the (rule id, state, last firing, suppressed firings to add) of the given rules in one statement."""
    payload = [{"id": i, "state": state, "last_fired_ms": fired, "suppressed": n} for i, state, fired, n in rows]
    if payload:
        cur.execute(_UPDATE_RULES, [json.dumps(payload)])


@functools.lru_cache(maxsize=65536)
def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def params_fingerprint(params: dict[str, Any]) -> str:
    """A short digest of a rule's parameters: a state saved for other parameters (the rule was edited) is reset."""
    return _fingerprint(json.dumps(params, sort_keys=True, default=str))


@dataclass
class RuleBook:
    """The active trade-kind rules, indexed by market, with their state and the markets' price windows."""

    version: tuple[Any, ...] | None = None
    rules: dict[int, Rule] = field(default_factory=dict)
    states: dict[int, RuleState] = field(default_factory=dict)
    exact: dict[Market, list[Rule]] = field(default_factory=dict)
    wild: list[Rule] = field(default_factory=list)
    compiled: dict[Market, MarketRules] = field(default_factory=dict)
    windows: dict[Market, Window] = field(default_factory=dict)
    thresholds: dict[Market, Decimal] = field(default_factory=dict)
    fingerprints: dict[int, str] = field(default_factory=dict)
    #: set while a batch's outcome waits for its commit; still set at the next batch: it rolled back
    pending: bool = False
    stale: bool = True
    loads: int = 0
    #: the version was checked in this batch's transaction (by on_trades_storing)
    checked: bool = False

    def load(self, version: tuple[Any, ...], using: str) -> None:
        """Read every active trade-kind rule, its destinations and state, and the whale thresholds."""
        rows = AlertRule.objects.using(using).filter(active=True, kind__in=sorted(TRADE_KINDS))
        through = AlertRule.destinations.through.objects.using(using)
        dests: dict[int, list[int]] = {}
        for rule_id, dest_id in through.filter(alertrule__active=True).values_list("alertrule_id", "destination_id"):
            dests.setdefault(rule_id, []).append(dest_id)
        self.rules, self.states, self.exact, self.wild, self.fingerprints = {}, {}, {}, [], {}
        for r in rows.values_list(
            "id", "owner_id", "kind", "exchange", "symbol", "params", "channels", "cooldown_s", "state", "last_fired_ms"
        ):
            rule_id, owner_id, kind, exchange, symbol, params, channels, cooldown_s, state, last_fired_ms = r
            try:
                if kind != "whale" and not (exchange and symbol):
                    raise RuleError("only whale rules may leave the exchange or symbol blank")
                rule = parse_rule(
                    rule_id,
                    owner_id,
                    kind,
                    exchange,
                    symbol,
                    params or {},
                    cooldown_s,
                    channels or (),
                    dests.get(rule_id, ()),
                )
            except RuleError as exc:
                logger.warning("alert rule skipped", extra={"rule": rule_id, "reason": str(exc)})
                continue
            saved = state or {}
            self.fingerprints[rule_id] = params_fingerprint(rule.params)
            fresh = saved.get("for") != self.fingerprints[rule_id]
            self.rules[rule_id] = rule
            self.states[rule_id] = RuleState.from_json({} if fresh else saved, last_fired_ms)
            if exchange and symbol:
                self.exact.setdefault((exchange, symbol), []).append(rule)
            else:
                self.wild.append(rule)
        self.compiled, self.windows = {}, {}
        self.version, self.stale, self.pending = version, False, False
        self.loads += 1

    def market(self, market: Market) -> MarketRules:
        """The rules watching ``market`` (its own and the matching wildcard whale rules), compiled."""
        compiled = self.compiled.get(market)
        if compiled is None:
            exchange, symbol = market
            wild = [r for r in self.wild if r.exchange in ("", exchange) and r.symbol in ("", symbol)]
            compiled = self.compiled[market] = MarketRules.compile([*self.exact.get(market, ()), *wild])
        return compiled

    def wants_thresholds(self) -> bool:
        """Whether a whale rule uses the per-symbol thresholds (then they are read once per batch: exact)."""
        return any(r.kind == "whale" and r.min_notional is None for r in self.rules.values())

    def threshold(self, market: Market) -> Decimal:
        """The whale threshold of ``market``: its override, else ``WHALE_THRESHOLD_USD`` (as analytics.whales)."""
        return self.thresholds.get(market, Decimal(settings.WHALE_THRESHOLD_USD))


_book = RuleBook()
_lock = threading.Lock()  # one consumer per process in production; tests may run several in threads


def book() -> RuleBook:
    """The process's rule book."""
    return _book


def mark_stale(**_: Any) -> None:
    """Reload the rules and their state at the next batch (partitions reassigned, rules changed here)."""
    _book.stale = True


@dataclass(frozen=True)
class Evaluated:
    """One market's batch: its trades, rules and outcome."""

    market: Market
    trades: Trades
    rules: MarketRules
    outcome: Outcome


def on_trades_storing(sender: Any, markets: set[Market], using: str, **_: Any) -> bool:
    """Before the insert, in its transaction: bring the book up to date (one version query) and say whether a rule
    watches any market of the batch (only then are the inserted rows returned and evaluated)."""
    with _lock:
        _refresh(_book, using)
        _book.checked = True
        if not _book.rules:
            return False
        return bool(_book.wild) or any(market in _book.exact for market in markets)


def _refresh(book: RuleBook, using: str) -> None:
    with connections[using].cursor() as cur:
        cur.execute(_VERSION)
        version = tuple(cur.fetchone() or ())
    if book.stale or book.pending or version != book.version:
        book.load(version, using)


def on_trades_stored(sender: Any, markets: Sequence[StoredTrades], using: str, **_: Any) -> None:
    """Evaluate the rules on the trades a store transaction inserted and record the firings in it."""
    with _lock:
        _evaluate_batch(_book, markets, using)


def _evaluate_batch(book: RuleBook, markets: Sequence[StoredTrades], using: str) -> None:
    # Checked by on_trades_storing just before the insert, in this transaction; else (a direct sender) here.
    if not book.checked:
        _refresh(book, using)
    book.checked = False
    connection = connections[using]
    with connection.cursor() as cur:
        if not book.rules:
            return
        if book.wants_thresholds():
            book.thresholds = threshold_overrides(using)
        done: list[Evaluated] = []
        items: list[Item] = []
        watched = [(stored, rules) for stored in markets if (rules := book.market((stored.exchange, stored.symbol)))]
        for (stored, rules), trades in zip(watched, _trades_of([s for s, _ in watched]), strict=True):
            key = (stored.exchange, stored.symbol)
            window = None
            if rules.moves:
                window = book.windows.get(key)
                if window is None:
                    window = _stored_window(key, trades, rules.window_ms, using)
            items.append(Item(rules, trades, window, book.threshold(key)))
            done.append(Evaluated(key, trades, rules, Outcome()))
        if not done:
            return
        # Every market at once (alerts.flat); a wildcard whale rule's cooldown runs across the batch's markets.
        outcomes = evaluate_batch(items, book.states)
        done = [replace(item, outcome=outcome) for item, outcome in zip(done, outcomes, strict=True)]
        running: dict[int, RuleState] = {}
        for outcome in outcomes:
            running.update(outcome.states)
        changed = _record(cur, book, done, running)
    book.pending = True
    transaction.on_commit(_committer(book, done, changed), using=using)


def _trades_of(markets: Sequence[StoredTrades]) -> list[Trades]:
    """Each market's :class:`Trades`, as slices of arrays built once for the whole batch (converting a few thousand
    texts in one call, not market by market); a market not in trade-id order is sorted on its own."""
    if not markets:
        return []
    lengths = [len(m.trade_ids) for m in markets]
    bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    ids = np.fromiter((i for m in markets for i in m.trade_ids), np.int64, bounds[-1])
    price_text = [p for m in markets for p in m.prices]
    quantity_text = [q for m in markets for q in m.quantities]
    if all(len(m.price_floats) == len(m.trade_ids) == len(m.quantity_floats) for m in markets):
        price = np.fromiter((p for m in markets for p in m.price_floats), np.float64, bounds[-1])
        quantity = np.fromiter((q for m in markets for q in m.quantity_floats), np.float64, bounds[-1])
    else:  # a sender without the doubles: the same values, parsed here
        price = np.fromiter(map(float, price_text), np.float64, bounds[-1])
        quantity = np.fromiter(map(float, quantity_text), np.float64, bounds[-1])
    times = np.fromiter((t for m in markets for t in m.times_ms), np.int64, bounds[-1])
    sides = np.fromiter((b for m in markets for b in m.is_buyer_maker), np.bool_, bounds[-1])
    out = []
    for stored, a, b in zip(markets, bounds[:-1], bounds[1:], strict=True):
        if b - a > 1 and not bool(np.all(ids[a + 1 : b] > ids[a : b - 1])):
            out.append(
                Trades.from_lists(
                    stored.trade_ids, stored.prices, stored.quantities, stored.times_ms, stored.is_buyer_maker
                )
            )
            continue
        out.append(
            Trades(ids[a:b], price_text[a:b], price[a:b], quantity_text[a:b], quantity[a:b], times[a:b], sides[a:b])
        )
    return out


def _committer(book: RuleBook, done: list[Evaluated], changed: dict[int, RuleState]) -> Callable[[], None]:
    def commit() -> None:
        book.states.update({rule_id: replace(state, suppressed=0) for rule_id, state in changed.items()})
        for item in done:
            if item.outcome.window is not None:
                book.windows[item.market] = item.outcome.window
        book.pending = False

    return commit


def _stored_window(market: Market, trades: Trades, span_ms: int, using: str) -> Window:
    """The stored trades a cold market's pct_move rules look back on: traded within ``span_ms`` before the batch's
    first new trade, stored before this batch, in the order they were stored (a late, backfilled trade after those
    stored before it, as the rules saw them)."""
    first_ms = int(trades.time_ms.min())
    excluding = [int(i) for i in trades.trade_id]
    rows = recent_prices(*market, first_ms - span_ms, excluding, using)
    if not rows:
        return Window.empty()
    ids, texts, times = zip(*rows, strict=True)
    return Window.of(
        np.asarray(ids, np.int64),
        np.asarray(times, np.int64),
        np.fromiter(map(float, texts), np.float64, len(texts)),
        list(texts),
        span_ms,
    )


def describe(rule: Rule, what: str, price: str, reference: str | None, market: Market) -> tuple[str, str]:
    """The subject and body of a firing."""
    exchange, symbol = market
    price_s = _plain(price)
    if rule.kind == "price_cross":
        subject = f"{symbol} crossed {_plain(str(rule.level))} {'upward' if what == 'up' else 'downward'}"
    elif rule.kind == "pct_move":
        sign = "+" if what == "up" else "-"
        subject = f"{symbol} moved {sign}{_plain(str(rule.pct))} % within {rule.window_ms // 1000} s"
        if reference is not None:
            subject += f" (from {_plain(reference)})"
    else:
        subject = f"{symbol} whale trade over {_plain(reference or '')}"
    return subject, f"{subject}: {price_s} on {exchange}"


def _plain(text: str) -> str:
    return format(Decimal(text).normalize(), "f")


def _record(
    cur: CursorWrapper, book: RuleBook, done: list[Evaluated], running: dict[int, RuleState]
) -> dict[int, RuleState]:
    """Insert the alerts, enqueue the new ones, update the changed rules; return the changed rules' states."""
    columns: list[list[Any]] = [[] for _ in range(10)]
    texts: dict[tuple[int, str], tuple[str, str, dict[str, Any]]] = {}
    for item in done:
        exchange, symbol = item.market
        for f in item.outcome.firings:
            rule = book.rules[f.rule_id]
            trade_id = int(item.trades.trade_id[f.index])
            price = item.trades.price_text[f.index]
            ms = int(item.trades.time_ms[f.index])
            subject, body = describe(rule, f.what, price, f.reference, item.market)
            trigger = f"trade:{trade_id}"
            details = {
                "what": f.what,
                "reference": f.reference,
                "quantity": item.trades.quantity_text[f.index],
                "side": "sell" if item.trades.is_buyer_maker[f.index] else "buy",
                "params": rule.params,
            }
            for column, value in zip(
                columns,
                (rule.id, rule.kind, exchange, symbol, trigger, trade_id, price, ms, body, json.dumps(details)),
                strict=True,
            ):
                column.append(value)
            payload = {
                "rule": rule.id,
                "kind": rule.kind,
                "exchange": exchange,
                "symbol": symbol,
                "trade_id": trade_id,
                "price": price,
                "t": ms,
                "message": body,
            }
            texts[(rule.id, trigger)] = (subject, body, payload)
    outgoing: list[Outgoing] = []
    if columns[0]:
        cur.execute(INSERT_ALERTS, columns)
        for alert_id, rule_id, trigger in cur.fetchall():
            rule = book.rules[rule_id]
            subject, body, payload = texts[(rule_id, trigger)]
            if rule.channels:  # no channel: stored and listed, nothing to deliver
                message = Message(f"alert:{alert_id}", subject, body, {"id": alert_id, **payload})
                outgoing.append(Outgoing(rule.owner_id, rule.channels, message, rule.destination_ids))
    if outgoing:
        enqueue(outgoing, cur.db.alias)
    changed: dict[int, RuleState] = {}
    for item in done:
        for rule_id in item.outcome.states:
            new = running[rule_id]
            # States in the book have no suppressed count: any difference (a count included) is a change.
            if new != book.states.get(rule_id, FRESH):
                changed[rule_id] = new
    fingerprints = book.fingerprints
    update_rules(
        cur,
        (
            (i, {"for": fingerprints[i], **st.to_json(book.rules[i].kind)}, st.last_fired_ms, st.suppressed)
            for i, st in changed.items()
        ),
    )
    return changed
