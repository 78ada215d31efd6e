"""Trade kinds (price_cross, pct_move, whale) and cooldowns, stored through the consumer's store path on the real
PostgreSQL, against brute-force computations written plainly here (Decimal, loops) from docs/ALERTS.md.

The trades are the bundled Binance recording (btcusdt_20240808.gz: 9,757 trades, 346 s), stored in batches as the
consumer does (``store_isolating``: the rows actually inserted are evaluated inside the store transaction).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from alerts import wiring
from alerts.models import Alert, AlertRule
from analytics.models import SymbolThreshold, Trade
from analytics.storage import store_isolating
from ingest.records import TradeRecord
from notifications.models import Delivery
from tests.analytics.test_consumer import real_trades

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BATCH = 700


@pytest.fixture(scope="module")
def recording() -> list[TradeRecord]:
    return sorted(real_trades(), key=lambda r: r.trade_id)


@pytest.fixture(autouse=True)
def fresh_book() -> None:
    # A new process: nothing in memory (the test database is new too).
    wiring._book = wiring.RuleBook()


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("alice", password="pw-alice-123")


def store(records: list[TradeRecord], size: int = BATCH) -> None:
    for i in range(0, len(records), size):
        _, refused = store_isolating(records[i : i + size])
        assert not refused


def fired(rule: AlertRule) -> list[int]:
    return sorted(i for i in Alert.objects.filter(rule=rule).values_list("trade_id", flat=True) if i is not None)


# ------------------------------------------------------------------------------------------- brute force
def brute_cross(trades: Iterable[TradeRecord], level: str, direction: str) -> list[int]:
    """The contract: the first trade only sets the state; up: >= level after < level; down: <= after >."""
    lv = Decimal(level)
    out: list[int] = []
    prev: Decimal | None = None
    for t in trades:
        p = Decimal(t.price)
        if prev is not None:
            up = direction in ("up", "both") and p >= lv and prev < lv
            down = direction in ("down", "both") and p <= lv and prev > lv
            if up or down:
                out.append(t.trade_id)
        prev = p
    return out


def brute_move(trades: list[TradeRecord], pct: str, window_s: int, direction: str) -> list[tuple[int, str]]:
    """Up holds on t when 100 p(t) >= (100 + pct) x the lowest price of the trades seen before t (trade-id order)
    with a time >= t's - window; down: 100 p(t) <= (100 - pct) x the highest. Each fires when it starts to hold."""
    pc = Decimal(pct)
    prices = [Decimal(t.price) for t in trades]
    out: list[tuple[int, str]] = []
    was_up = was_down = False
    start = 0  # the recording's times never decrease in trade-id order (asserted by the test)
    for i, t in enumerate(trades):
        p = prices[i]
        while trades[start].trade_time < t.trade_time - window_s * 1000:
            start += 1
        earlier = prices[start:i]
        up = bool(earlier) and direction != "down" and p * 100 >= (100 + pc) * min(earlier)
        down = bool(earlier) and direction != "up" and p * 100 <= (100 - pc) * max(earlier)
        if up and not was_up:
            out.append((t.trade_id, "up"))
        elif down and not was_down:  # a trade fires a rule once: up when both start on it
            out.append((t.trade_id, "down"))
        was_up, was_down = up, down
    return out


def brute_cooldown(firings: list[tuple[int, int]], cooldown_s: int) -> tuple[list[int], int]:
    """(trade id, time ms) firings in order -> the kept trade ids and the suppressed count."""
    kept: list[int] = []
    last: int | None = None
    suppressed = 0
    for trade_id, ms in firings:
        if last is not None and ms < last + cooldown_s * 1000:
            suppressed += 1
            continue
        kept.append(trade_id)
        last = ms
    return kept, suppressed


# ------------------------------------------------------------------------------------------- tests
CROSS_CASES = [("61700", "up"), ("61700", "down"), ("61650.5", "both"), ("61800", "both")]


def test_price_cross_matches_the_contract_and_a_replay_fires_nothing(recording, owner):
    tie = recording[len(recording) // 2].price  # a level some trades sit exactly on (the tie path)
    rules = [
        AlertRule.objects.create(
            owner=owner, kind="price_cross", exchange="binance", symbol="BTCUSDT", params={"level": lv, "direction": d}
        )
        for lv, d in [*CROSS_CASES, (tie, "both")]
    ]
    store(recording)
    for rule in rules:
        expected = brute_cross(recording, rule.params["level"], rule.params["direction"])
        assert fired(rule) == sorted(expected), rule.params
    total = Alert.objects.count()
    assert total > 20
    assert any(Decimal(t.price) == Decimal(tie) for t in recording)
    # A replay (same batches, or cut differently) inserts no trade and fires nothing.
    deliveries = Delivery.objects.count()
    store(recording, size=333)
    assert Alert.objects.count() == total
    assert Delivery.objects.count() == deliveries


def test_a_rule_created_after_trades_sees_only_later_ones(recording, owner):
    # Split where the price changes, at a level the first later trade reaches: had the rule seen the trade before
    # it, that trade would fire; it only sets the state.
    half = next(i for i in range(len(recording) // 2, len(recording)) if recording[i].price != recording[i - 1].price)
    level = recording[half].price
    store(recording[:half])
    rule = AlertRule.objects.create(
        owner=owner,
        kind="price_cross",
        exchange="binance",
        symbol="BTCUSDT",
        params={"level": level, "direction": "both"},
        channels=["in_app"],
    )
    store(recording[half:])
    assert fired(rule) == brute_cross(recording[half:], level, "both")
    assert recording[half].trade_id in brute_cross(recording, level, "both")
    assert recording[half].trade_id not in fired(rule)
    # One in-app delivery per alert, keyed by the alert.
    keys = set(Delivery.objects.values_list("key", flat=True))
    assert len(keys) == len(fired(rule)) > 0
    assert all(k.startswith("alert:") for k in keys)


MOVE_CASES = [("0.05", 30, "up"), ("0.05", 30, "down"), ("0.08", 120, "both"), ("0.03", 5, "both")]


def test_pct_move_matches_the_definition_across_batches_and_a_restart(recording, owner):
    rules = [
        AlertRule.objects.create(
            owner=owner,
            kind="pct_move",
            exchange="binance",
            symbol="BTCUSDT",
            params={"pct": pct, "window_s": w, "direction": d},
        )
        for pct, w, d in MOVE_CASES
    ]
    assert all(a.trade_time <= b.trade_time for a, b in itertools.pairwise(recording))
    third = len(recording) // 3
    store(recording[:third])
    # A rule saved now: its window never reaches back before the first trade it sees (the young-rule path).
    late = AlertRule.objects.create(
        owner=owner,
        kind="pct_move",
        exchange="binance",
        symbol="BTCUSDT",
        params={"pct": "0.03", "window_s": 60, "direction": "both"},
    )
    store(recording[third : third + 200])
    wiring._book = wiring.RuleBook()  # a restart: the windows are rebuilt from the stored trades
    store(recording[third + 200 : 2 * third], size=450)
    wiring.mark_stale()  # a reassignment: state reloaded from the database
    store(recording[2 * third :])
    for rule in rules:
        p = rule.params
        expected = brute_move(recording, p["pct"], p["window_s"], p["direction"])
        got = sorted(Alert.objects.filter(rule=rule).values_list("trade_id", "details__what"))
        assert got == sorted(expected), p
    got = sorted(Alert.objects.filter(rule=late).values_list("trade_id", "details__what"))
    assert got == sorted(brute_move(recording[third:], "0.03", 60, "both"))
    assert got != sorted(t for t in brute_move(recording, "0.03", 60, "both") if t[0] >= recording[third].trade_id)
    assert Alert.objects.filter(kind="pct_move").count() > 10


def test_whale_thresholds_per_symbol_per_rule_and_wildcards(recording, owner, settings):
    settings.WHALE_THRESHOLD_USD = Decimal("100000")
    SymbolThreshold.objects.create(exchange="binance", symbol="BTCUSDT", threshold_usd=Decimal("20000"))
    symbol_rule = AlertRule.objects.create(owner=owner, kind="whale", exchange="binance", symbol="BTCUSDT")
    own = AlertRule.objects.create(
        owner=owner, kind="whale", exchange="binance", symbol="BTCUSDT", params={"min_notional": "40000"}
    )
    everywhere = AlertRule.objects.create(owner=owner, kind="whale")
    other = AlertRule.objects.create(owner=owner, kind="whale", exchange="coinbase", params={"min_notional": "1"})
    store(recording)

    def over(limit: str) -> list[int]:
        return sorted(t.trade_id for t in recording if Decimal(t.price) * Decimal(t.quantity) >= Decimal(limit))

    assert len(over("20000")) > 10
    assert over("40000")
    assert fired(symbol_rule) == over("20000")
    assert fired(own) == over("40000")
    assert fired(everywhere) == over("20000")  # blank exchange/symbol: every market, at the market's threshold
    assert fired(other) == []


def test_cooldown_suppresses_and_counts(recording, owner):
    rule = AlertRule.objects.create(
        owner=owner,
        kind="price_cross",
        exchange="binance",
        symbol="BTCUSDT",
        params={"level": "61700", "direction": "both"},
        cooldown_s=20,
    )
    store(recording)
    times = {t.trade_id: t.trade_time for t in recording}
    raw = [(i, times[i]) for i in brute_cross(recording, "61700", "both")]
    kept, suppressed = brute_cooldown(raw, 20)
    assert suppressed > 0
    rule.refresh_from_db()
    assert fired(rule) == kept
    assert rule.suppressed == suppressed
    assert rule.last_fired_ms == times[kept[-1]]


def test_a_rolled_back_batch_fires_again_once_when_replayed(recording, owner):
    rule = AlertRule.objects.create(
        owner=owner,
        kind="price_cross",
        exchange="binance",
        symbol="BTCUSDT",
        params={"level": "61700", "direction": "both"},
        channels=["in_app"],
    )
    half = len(recording) // 2
    store(recording[:half])
    before = Alert.objects.count()

    class CrashError(Exception):
        pass

    def crash_before_commit() -> None:
        with transaction.atomic():
            store(recording[half:])
            assert Alert.objects.count() > before
            raise CrashError

    # A crash after the evaluation, before the commit: trades, alerts and deliveries roll back together.
    with pytest.raises(CrashError):
        crash_before_commit()
    assert Alert.objects.count() == before
    assert Trade.objects.count() == half
    store(recording[half:])
    assert fired(rule) == brute_cross(recording, "61700", "both")
    assert Delivery.objects.count() == Alert.objects.count()
