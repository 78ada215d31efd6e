"""The candle kinds (``indicator``, ``volume_spike``), evaluated on closed candles inside the candle update's
transaction (:data:`analytics.signals.series_updated`, sent by ``analytics.series.update_series``).

A candle is closed once a later candle of its interval is stored. Each rule keeps ``seen``, the open time of the
newest closed candle it evaluated: the first update it sees only sets it, later ones evaluate the closed candles
after it, once each (a candle recomputed later, by late trades, is not evaluated again). Exact semantics:
docs/ALERTS.md ("Kinds"). Statements per update: the rules (locked ``FOR UPDATE``: two workers updating the same
market evaluate one after the other), the recompute of the candles the update closed without touching (usually
none), one series query per interval with rules, the alerts, their deliveries and the rules' state; never one per
rule or per candle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection

from alerts.models import AlertKind, AlertRule
from alerts.wiring import INSERT_ALERTS, params_fingerprint, update_rules
from analytics.candles import recompute_candles
from analytics.indicators import update_indicators
from analytics.models import INTERVAL_SECONDS
from analytics.queries import SeriesBar, series_since
from cryptoproject.timeutil import ms_to_datetime
from notifications.outbox import Message, Outgoing, enqueue

logger = logging.getLogger(__name__)

CANDLE_KINDS = (AlertKind.INDICATOR, AlertKind.VOLUME_SPIKE)
INDICATORS = ("rsi", "macd", "sma", "ema", "bollinger")


class CandleRuleError(ValueError):
    """A candle rule's parameters are invalid (the rule is skipped)."""


@dataclass(frozen=True)
class CandleRule:
    """A parsed candle-kind rule."""

    id: int
    owner_id: int
    kind: str
    interval: str
    params: dict[str, Any]
    indicator: str = ""
    level: Decimal | None = None
    period: str = ""
    direction: str = "both"
    factor: Decimal | None = None
    n: int = 0
    cooldown_ms: int = 0
    channels: tuple[str, ...] = ()
    destination_ids: tuple[int, ...] = ()


def parse_candle_rule(rule: AlertRule, destination_ids: tuple[int, ...] = ()) -> CandleRule:
    """Check and parse ``rule``'s parameters; raises :class:`CandleRuleError`."""
    p = rule.params or {}
    interval = str(p.get("interval", ""))
    if interval not in INTERVAL_SECONDS:
        raise CandleRuleError(f"interval must be one of {sorted(INTERVAL_SECONDS)}")
    base = CandleRule(
        rule.pk,
        rule.owner_id,
        rule.kind,
        interval,
        dict(p),
        cooldown_ms=rule.cooldown_s * 1000,
        channels=tuple(rule.channels or ()),
        destination_ids=destination_ids,
    )
    try:
        if rule.kind == AlertKind.VOLUME_SPIKE:
            factor, n = Decimal(str(p["factor"])), int(p["n"])
            if not factor.is_finite() or factor <= 0 or n < 1:
                raise CandleRuleError("factor must be positive and n at least 1")
            return _with(base, factor=factor, n=n)
        indicator, direction = str(p.get("indicator", "")), str(p.get("direction", "both"))
        if indicator not in INDICATORS:
            raise CandleRuleError(f"indicator must be one of {INDICATORS}")
        if direction not in ("up", "down", "both"):
            raise CandleRuleError("direction must be up, down or both")
        level = Decimal(str(p["level"])) if indicator == "rsi" else None
        if level is not None and not (level.is_finite() and 0 <= level <= 100):
            raise CandleRuleError("level must be between 0 and 100")
        period = str(int(p["period"])) if indicator in ("sma", "ema") else ""
        if period and int(period) not in settings.INDICATOR_MA_PERIODS:
            raise CandleRuleError(f"period must be one of {settings.INDICATOR_MA_PERIODS}")
        return _with(base, indicator=indicator, level=level, period=period, direction=direction)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        if isinstance(exc, CandleRuleError):
            raise
        raise CandleRuleError(f"invalid parameters: {exc!r}") from exc


def _with(rule: CandleRule, **changes: Any) -> CandleRule:
    return replace(rule, **changes)


# ------------------------------------------------------------------------------------------------- pure evaluation
Diff = Callable[[SeriesBar], Decimal | None]


def _diffs(rule: CandleRule) -> list[tuple[Diff, str]]:
    """(value - reference for a bar, the directions it may fire) of an indicator rule."""
    up, down = rule.direction in ("up", "both"), rule.direction in ("down", "both")
    both = "ud" if up and down else ("u" if up else "d")

    def sub(a: Decimal | None, b: Decimal | str | None) -> Decimal | None:
        return None if a is None or b is None else Decimal(a) - Decimal(b)

    if rule.indicator == "rsi":
        return [(lambda b: sub(b.rsi, rule.level), both)]
    if rule.indicator == "macd":
        return [(lambda b: sub(b.macd, b.macd_signal), both)]
    if rule.indicator in ("sma", "ema"):
        column = rule.indicator
        return [(lambda b: sub(b.close, getattr(b, column).get(rule.period)), both)]
    # bollinger: the close crossing above the upper band (up), below the lower band (down)
    out: list[tuple[Diff, str]] = []
    if up:
        out.append((lambda b: sub(b.close, b.bb_upper), "u"))
    if down:
        out.append((lambda b: sub(b.close, b.bb_lower), "d"))
    return out


def evaluate_candles(rule: CandleRule, bars: list[SeriesBar], step_ms: int, after_ms: int) -> list[tuple[int, str]]:
    """(index in ``bars``, "up"/"down"/"spike") firings of ``rule`` on the closed bars opened after ``after_ms``
    (``bars``: oldest first, the last one still open). A bar whose predecessor is not exactly one interval before
    it (a hole) never fires: neither a cross nor a spike is measured across missing bars."""
    fired: list[tuple[int, str]] = []
    for i in range(1, len(bars) - 1):  # the last bar is still open
        bar, prev = bars[i], bars[i - 1]
        if bar.open_ms <= after_ms or bar.open_ms - prev.open_ms != step_ms:
            continue
        if rule.kind == AlertKind.VOLUME_SPIKE:
            n = rule.n
            window = bars[i - n : i] if i >= n else []
            contiguous = len(window) == n and window[-1].open_ms - window[0].open_ms == (n - 1) * step_ms
            if contiguous and rule.factor is not None:
                total = sum((w.volume for w in window), Decimal(0))
                if bar.volume * n >= rule.factor * total:  # volume >= factor x mean, exactly
                    fired.append((i, "spike"))
            continue
        for diff, directions in _diffs(rule):
            d_prev, d_cur = diff(prev), diff(bar)
            if d_prev is None or d_cur is None:
                continue
            if "u" in directions and d_prev < 0 <= d_cur:
                fired.append((i, "up"))
            elif "d" in directions and d_prev > 0 >= d_cur:
                fired.append((i, "down"))
    return fired


# ------------------------------------------------------------------------------------------------- wiring
def on_series_updated(sender: Any, exchange: str, symbol: str, touched: dict[str, list[datetime]], **_: Any) -> None:
    """Evaluate the market's candle rules on the candles this update closed, in its transaction."""
    rules = list(
        AlertRule.objects.select_for_update()
        .filter(
            active=True, kind__in=CANDLE_KINDS, exchange=exchange, symbol=symbol, params__interval__in=list(touched)
        )
        .order_by("pk")
    )
    if not rules:
        return
    through = AlertRule.destinations.through.objects.filter(alertrule_id__in=[r.pk for r in rules])
    dests: dict[int, list[int]] = {}
    for rule_id, dest_id in through.values_list("alertrule_id", "destination_id"):
        dests.setdefault(rule_id, []).append(dest_id)
    parsed: list[tuple[AlertRule, CandleRule]] = []
    for rule in rules:
        try:
            parsed.append((rule, parse_candle_rule(rule, tuple(sorted(dests.get(rule.pk, ()))))))
        except CandleRuleError as exc:
            logger.warning("alert rule skipped", extra={"rule": rule.pk, "reason": str(exc)})
    columns: list[list[Any]] = [[] for _ in range(10)]
    texts: dict[tuple[int, str], tuple[str, str, dict[str, Any]]] = {}
    updates: dict[int, tuple[dict[str, Any], int | None, int]] = {}
    owners = {rule.pk: (rule.owner_id, c.channels, c.destination_ids) for rule, c in parsed}
    for interval in {c.interval for _, c in parsed}:
        step = INTERVAL_SECONDS[interval] * 1000
        mine = [(r, c) for r, c in parsed if c.interval == interval]
        first = min(int(t.timestamp() * 1000) for t in touched[interval])
        back = max((c.n for _, c in mine), default=0) + 2
        _complete_closed(exchange, symbol, interval, [r.state for r, c in mine if not _fresh(r, c)], first, back)
        bars = series_since(exchange, symbol, interval, first - back * step)
        if len(bars) < 2:
            continue
        newest_closed = bars[-2].open_ms
        for rule, c in mine:
            state = dict(rule.state or {})
            fresh = _fresh(rule, c)
            last_fired, suppressed = rule.last_fired_ms, 0
            if not fresh:
                for i, what in evaluate_candles(c, bars, step, int(state["seen"])):
                    bar = bars[i]
                    close_ms = bar.open_ms + step
                    if last_fired is not None and c.cooldown_ms and close_ms < last_fired + c.cooldown_ms:
                        suppressed += 1
                        continue
                    last_fired = close_ms
                    trigger = f"candle:{interval}:{bar.open_ms}"
                    subject = _subject(c, symbol, what)
                    body = f"{subject}: close {format(bar.close.normalize(), 'f')} on {exchange}"
                    details = {"what": what, "interval": interval, "volume": str(bar.volume), "params": c.params}
                    row = (c.id, c.kind, exchange, symbol, trigger, None, str(bar.close), close_ms, body)
                    for column, value in zip(columns, (*row, json.dumps(details)), strict=True):
                        column.append(value)
                    payload = {"rule": c.id, "kind": c.kind, "exchange": exchange, "symbol": symbol}
                    payload |= {"trade_id": None, "price": str(bar.close), "t": close_ms, "message": body}
                    texts[(c.id, trigger)] = (subject, body, payload)
            seen = max(newest_closed, int(state.get("seen", newest_closed))) if not fresh else newest_closed
            new_state: dict[str, Any] = {"for": params_fingerprint(c.params), "seen": seen}
            # ``since``: the newest candle closed when the rule started (its first update), which it never
            # evaluates; only the candles after it. Kept for the record (the chaos check reads it).
            since = newest_closed if fresh else state.get("since")
            if since is not None:
                new_state["since"] = since
            if new_state != state or last_fired != rule.last_fired_ms or suppressed:
                updates[c.id] = (new_state, last_fired, suppressed)
    with connection.cursor() as cur:
        outgoing: list[Outgoing] = []
        if columns[0]:
            cur.execute(INSERT_ALERTS, columns)
            for alert_id, rule_id, trigger in cur.fetchall():
                subject, body, payload = texts[(rule_id, trigger)]
                owner_id, channels, destination_ids = owners[rule_id]
                message = Message(f"alert:{alert_id}", subject, body, {"id": alert_id, **payload})
                outgoing.append(Outgoing(owner_id, channels, message, destination_ids))
        if outgoing:
            enqueue(outgoing)
        update_rules(cur, ((i, st, fired, n) for i, (st, fired, n) in updates.items()))


def _fresh(rule: AlertRule, parsed: CandleRule) -> bool:
    """Whether the rule is new or edited (no ``seen`` for these parameters): this update only sets its state."""
    state = rule.state or {}
    return state.get("for") != params_fingerprint(parsed.params) or "seen" not in state


def _complete_closed(
    exchange: str, symbol: str, interval: str, states: list[dict[str, Any]], first_ms: int, back: int
) -> None:
    """Recompute, from every stored trade, the candles this update closed without touching (before ``first_ms``,
    after the newest candle the rules saw closed), with their indicators, before the rules evaluate them.

    The market's candle updates run in any order (two worker processes; a task re-delivered after a worker died):
    the update of a later batch can close a minute before the update of an earlier batch has added that minute's
    last trades. Those trades are stored already (a batch commits before its update is sent), so a recompute here
    sees them, and each closed candle is evaluated whole. Usually nothing or one candle; a 1d rule recomputes the
    day's minutes once a day. At most the ``back`` candles the evaluation reads.
    """
    seen = [int(state["seen"]) for state in states]
    if not seen:
        return
    step = INTERVAL_SECONDS[interval] * 1000
    since = max(max(seen) + step, first_ms - back * step)
    if since >= first_ms:
        return
    recompute_candles(exchange, symbol, since, first_ms - 1, intervals=[interval])
    update_indicators(exchange, symbol, interval, ms_to_datetime(since), locked=True)


def _subject(rule: CandleRule, symbol: str, what: str) -> str:
    arrow = {"up": "up", "down": "down"}.get(what, what)
    if rule.kind == AlertKind.VOLUME_SPIKE:
        return f"{symbol} {rule.interval} volume >= {rule.factor} x the mean of {rule.n} candles"
    name = {"rsi": f"RSI {rule.level}", "macd": "MACD signal", "bollinger": "Bollinger band"}.get(
        rule.indicator, f"{rule.indicator.upper()}({rule.period})"
    )
    return f"{symbol} {rule.interval} crossed {name} ({arrow})"
