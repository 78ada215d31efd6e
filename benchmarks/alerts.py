"""``make bench-alerts``: the consumer's store chain with 10,000 active alert rules over 100 markets, against the
same chain with none, in the same run.

The chain is the consumer's store step (:func:`analytics.storage.store_isolating`: COPY, the idempotent insert
returning the new rows, and the alert evaluation with its writes, in one transaction per batch), run in this
process on its own database (``<name>_bench_alerts``). Three groups of 100 markets each get the same real trades
(the bundled recording, each market at its own offset, shifted to the present; ``--batch-size`` trades per batch,
an equal share per market, as a consumer batch over many partitions carries them):

- ``rules``: 100 markets with ``--rules`` active rules among them (per market: 40 price_cross, 30 pct_move and
  30 whale rules, some with cooldowns; every rule on the in-app channel, ``--owners`` owners; ``--channel none``:
  no channel, so no delivery rows: the evaluation and the alert rows alone);
- ``none``: 100 markets no rule watches (the evaluator still runs: its version check, nothing else);
- ``plain``: the store alone, without announcing the trades (the path before alerts existed): a second reference.

The groups are interleaved batch by batch (the order rotating), so all three meet the same machine; the first
``--warmup`` batches of each (rule loading, first states) are reported apart. Reported: rows/s of each, the ratio
rules/none (target >= 90 %), statements per batch, alerts and deliveries, and a check that the firings of
``--check-markets`` markets (every rule of them) equal a brute-force evaluation written here (integers and
Decimal, loops). Results: ``bench-results/alerts.json`` and a table on stdout. The machine is shared: noisy.

``--chain-rounds N`` (N > 0) also measures the consumer chain itself, Kafka -> ``consume_trades`` -> PostgreSQL:
N rounds, each with fresh trades (the markets' streams continued) of the ``rules`` and the ``none`` markets put on
topics of their own, then one ``consume_trades`` process per group and round (the order rotating), stopped once it
stored them all. Its rate is the round's rows over the span of their ``stored_at`` (the consumer's pace while it ran,
start-up left out; the rule book's load and the windows' rebuild in its first batch are counted).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.harness import ROOT
from benchmarks.pipeline import DEFAULT_REPLAY, bench_environment, replay_trades

if TYPE_CHECKING:
    from ingest.records import TradeRecord

GROUPS = ("rules", "none", "plain")
PREFIX = {"rules": "A", "none": "N", "plain": "P"}
SCALE = 10**12  # prices and quantities are stored with 12 decimals: scaled integers compare exactly


@dataclass
class Result:
    """The figures of one run."""

    markets: int
    rules: int
    channel: str
    batches: int
    batch_size: int
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    rows_per_s: dict[str, float] = field(default_factory=dict)
    warmup_seconds: dict[str, float] = field(default_factory=dict)
    statements_per_batch: dict[str, float] = field(default_factory=dict)
    ratio_rules_vs_none: float = 0.0
    ratio_none_vs_plain: float = 0.0
    alerts: int = 0
    deliveries: int = 0
    suppressed: int = 0
    checked_markets: int = 0
    checked_rules: int = 0
    firings_match: bool = False
    mismatches: list[str] = field(default_factory=list)
    load_avg: list[float] = field(default_factory=list)
    chain_rounds: int = 0
    chain_rows: dict[str, int] = field(default_factory=dict)
    chain_rows_per_s: dict[str, list[float]] = field(default_factory=dict)
    chain_ratio_rules_vs_none: float = 0.0


# --------------------------------------------------------------------------------------------- workload
def market_streams(base: list[TradeRecord], markets: int, per_market: int, now_ms: int) -> list[list[TradeRecord]]:
    """Per market, ``per_market`` trades of the recording from its own offset (looped with shifted ids and times),
    moved to the present; symbols are set per group later."""
    id_span = base[-1].trade_id - base[0].trade_id + 1
    time_span = base[-1].trade_time - base[0].trade_time + 1
    # Every market's last trade (each starts at its own offset) ends a minute before now: none lies in the future.
    latest = 0
    for k in range(markets):
        loop, r = divmod((k * len(base)) // markets + per_market - 1, len(base))
        latest = max(latest, base[r].received_at + loop * time_span)
    shift = now_ms - latest - 60_000
    streams = []
    for k in range(markets):
        offset = (k * len(base)) // markets
        out = []
        for i in range(per_market):
            loop, r = divmod(offset + i, len(base))
            t = base[r]
            out.append(
                t._replace(
                    trade_id=t.trade_id + loop * id_span,
                    trade_time=t.trade_time + loop * time_span + shift,
                    event_time=t.event_time + loop * time_span + shift,
                    received_at=t.received_at + loop * time_span + shift,
                )
            )
        streams.append(out)
    return streams


def batches(streams: list[list[TradeRecord]], group: str, count: int, size: int) -> list[list[TradeRecord]]:
    """``count`` batches of ``size`` trades of ``group``'s markets (an equal share of each market per batch)."""
    per = size // len(streams)
    out = []
    for b in range(count):
        batch: list[TradeRecord] = []
        for k, stream in enumerate(streams):
            symbol = f"{PREFIX[group]}{k:03d}USDT"
            batch.extend(t._replace(symbol=symbol) for t in stream[b * per : (b + 1) * per])
        out.append(batch)
    return out


def rule_specs(stream: list[TradeRecord], count: int) -> list[dict[str, Any]]:
    """``count`` rules for one market, as users set them: 40 % price_cross at round levels within 1 % of its
    first price, 30 % pct_move (0.1 to 0.5 % within 1 to 15 minutes), 30 % whale (the market's threshold or
    50k to 250k); a third of them with a one-minute cooldown."""
    first = Decimal(stream[0].price)
    specs: list[dict[str, Any]] = []
    n_cross, n_move = count * 4 // 10, count * 3 // 10
    for i in range(n_cross):
        step = (i - n_cross // 2) * first / 100 / (n_cross // 2 or 1)  # levels spread over +-1 %
        level = (first + step).quantize(Decimal(10))
        direction = ("up", "down", "both")[i % 3]
        specs.append({"kind": "price_cross", "params": {"level": str(level), "direction": direction}})
    for i in range(n_move):
        pct = ("0.1", "0.2", "0.5")[i % 3]
        window = (60, 300, 900)[(i // 3) % 3]
        direction = ("up", "down", "both")[(i // 9) % 3]
        specs.append({"kind": "pct_move", "params": {"pct": pct, "window_s": window, "direction": direction}})
    for i in range(count - n_cross - n_move):
        limit = ("", "50000", "100000", "250000")[i % 4]
        specs.append({"kind": "whale", "params": {"min_notional": limit} if limit else {}})
    for i, spec in enumerate(specs):
        spec["cooldown_s"] = (0, 0, 60)[i % 3]
    return specs


# --------------------------------------------------------------------------------------------- brute force
def brute_firings(spec: dict[str, Any], trades: list[TradeRecord], whale_default: Decimal) -> tuple[list[int], int]:
    """(trade ids kept, suppressed count) of one rule over one market's trades in order, written plainly."""
    kind, prm = spec["kind"], spec["params"]
    raw: list[tuple[int, int]] = []
    prices = [int(Decimal(t.price) * SCALE) for t in trades]
    if kind == "price_cross":
        level, d = int(Decimal(prm["level"]) * SCALE), prm["direction"]
        for i in range(1, len(trades)):
            p, q = prices[i], prices[i - 1]
            if (d != "down" and p >= level and q < level) or (d != "up" and p <= level and q > level):
                raw.append((trades[i].trade_id, trades[i].trade_time))
    elif kind == "pct_move":
        pct100 = int(Decimal(prm["pct"]) * 100)  # in hundredths of a percent
        span, d = prm["window_s"] * 1000, prm["direction"]
        start, was_up, was_down = 0, False, False
        for i, t in enumerate(trades):
            while trades[start].trade_time < t.trade_time - span:
                start += 1
            earlier = prices[start:i]
            up = bool(earlier) and d != "down" and prices[i] * 10000 >= (10000 + pct100) * min(earlier)
            down = bool(earlier) and d != "up" and prices[i] * 10000 <= (10000 - pct100) * max(earlier)
            if (up and not was_up) or (down and not was_down):  # a trade fires a rule once
                raw.append((t.trade_id, t.trade_time))
            was_up, was_down = up, down
    else:
        limit = Decimal(prm.get("min_notional") or whale_default)
        raw = [(t.trade_id, t.trade_time) for t in trades if Decimal(t.price) * Decimal(t.quantity) >= limit]
    kept, last, suppressed = [], None, 0
    for trade_id, ms in raw:
        if last is not None and spec["cooldown_s"] and ms < last + spec["cooldown_s"] * 1000:
            suppressed += 1
            continue
        kept.append(trade_id)
        last = ms
    return kept, suppressed


# --------------------------------------------------------------------------------------------- the run
@contextmanager
def counting(counter: list[int]) -> Iterator[None]:
    """Count the SQL statements run on the default connection."""
    from django.db import connection

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        counter[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield


def run(opts: argparse.Namespace) -> Result:
    """Set up the database and rules, store the interleaved batches, check the firings."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from alerts import wiring
    from alerts.models import Alert, AlertRule
    from analytics import partitions
    from analytics.storage import store_isolating, store_trades
    from notifications.models import Delivery

    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cur:
        cur.execute("TRUNCATE analytics_trade, alerts_alert, alerts_alertrule, notifications_delivery CASCADE")
    now_ms = int(time.time() * 1000)
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    partitions.ensure_partitions(now - timedelta(days=1), now + timedelta(days=1))
    base = replay_trades(Path(opts.replay))
    per_market = opts.batch_size // opts.markets * opts.batches
    chained = opts.chain_rounds * (opts.chain_round_size // opts.markets)
    streams = market_streams(base, opts.markets, per_market + chained, now_ms)
    work = {g: batches(streams, g, opts.batches, opts.batch_size) for g in GROUPS}

    users = get_user_model()
    owners = [users.objects.get_or_create(username=f"bench-alerts-{i}")[0] for i in range(opts.owners)]
    per_rules = opts.rules // opts.markets
    specs = {k: rule_specs(streams[k], per_rules) for k in range(opts.markets)}
    AlertRule.objects.bulk_create(
        [
            AlertRule(
                owner=owners[(k * per_rules + i) % len(owners)],
                kind=spec["kind"],
                exchange="binance",
                symbol=f"A{k:03d}USDT",
                params=spec["params"],
                channels=[opts.channel] if opts.channel != "none" else [],
                cooldown_s=spec["cooldown_s"],
            )
            for k in range(opts.markets)
            for i, spec in enumerate(specs[k])
        ],
        batch_size=2000,
    )
    wiring._book = wiring.RuleBook()

    result = Result(opts.markets, AlertRule.objects.count(), opts.channel, opts.batches, opts.batch_size)
    seconds = dict.fromkeys(GROUPS, 0.0)
    warm = dict.fromkeys(GROUPS, 0.0)
    rows = dict.fromkeys(GROUPS, 0)
    statements = {g: [0] for g in GROUPS}
    for b in range(opts.batches):
        order = GROUPS[b % 3 :] + GROUPS[: b % 3]
        for group in order:
            batch = work[group][b]
            with counting(statements[group]):
                started = time.perf_counter()
                if group == "plain":
                    inserted = store_trades(batch).inserted
                else:
                    stored, refused = store_isolating(batch)
                    assert not refused
                    inserted = stored.inserted
                spent = time.perf_counter() - started
            if b < opts.warmup:
                warm[group] += spent
                statements[group][0] = 0
            else:
                seconds[group] += spent
                rows[group] += inserted
    measured = opts.batches - opts.warmup
    result.rows, result.seconds, result.warmup_seconds = rows, seconds, warm
    result.rows_per_s = {g: rows[g] / seconds[g] for g in GROUPS}
    result.statements_per_batch = {g: statements[g][0] / measured for g in GROUPS}
    result.ratio_rules_vs_none = result.rows_per_s["rules"] / result.rows_per_s["none"]
    result.ratio_none_vs_plain = result.rows_per_s["none"] / result.rows_per_s["plain"]
    if opts.chain_rounds:
        chain_rounds(opts, result, streams, per_market)
    result.alerts = Alert.objects.count()
    result.deliveries = Delivery.objects.count()
    result.suppressed = sum(AlertRule.objects.values_list("suppressed", flat=True))

    # The firings of a sample of markets, every rule of them, against the brute force.
    sample = sorted(random.Random(opts.seed).sample(range(opts.markets), opts.check_markets))
    stored_rules = list(AlertRule.objects.filter(symbol__in=[f"A{k:03d}USDT" for k in sample]).order_by("pk"))
    by_market: dict[str, list[AlertRule]] = {}
    for rule in stored_rules:
        by_market.setdefault(rule.symbol, []).append(rule)
    fired: dict[int, list[int]] = {}
    for rule_id, trade_id in Alert.objects.filter(rule__in=stored_rules).values_list("rule_id", "trade_id"):
        fired.setdefault(rule_id, []).append(int(trade_id or 0))
    for k in sample:
        trades = streams[k]
        for rule in by_market[f"A{k:03d}USDT"]:
            spec = {"kind": rule.kind, "params": rule.params, "cooldown_s": rule.cooldown_s}
            kept, suppressed = brute_firings(spec, trades, Decimal(settings.WHALE_THRESHOLD_USD))
            if sorted(fired.get(rule.pk, [])) != sorted(kept) or rule.suppressed != suppressed:
                result.mismatches.append(f"rule {rule.pk} {rule.kind} {rule.params}")
            result.checked_rules += 1
    result.checked_markets = len(sample)
    result.firings_match = not result.mismatches
    result.load_avg = list(os.getloadavg())
    return result


# --------------------------------------------------------------------------------------------- the consumer chain
def chain_rounds(opts: argparse.Namespace, result: Result, streams: list[list[TradeRecord]], offset: int) -> None:
    """``--chain-rounds`` rounds of the consumer chain per group (see the module's docstring); fills ``result``."""
    import subprocess

    from django.conf import settings
    from django.db import connection
    from kafka import KafkaProducer

    from benchmarks.harness import delete_topics, manage
    from benchmarks.pipeline import Chain
    from cryptoproject.kafka import TopicSpec, admin_client, client_config, ensure_topics

    per = opts.chain_round_size // opts.markets
    run = f"{os.getpid()}-{int(time.time())}"
    topics = {(g, r): f"bench.alerts.{run}.{g}.{r}" for g in ("rules", "none") for r in range(opts.chain_rounds)}
    ensure_topics([TopicSpec(t, settings.KAFKA_TRADES_PARTITIONS, {}) for t in topics.values()])
    producer = KafkaProducer(**client_config(), acks="all", linger_ms=20, batch_size=512 * 1024)
    try:
        for (group, r), topic in topics.items():
            part = [s[offset + r * per : offset + (r + 1) * per] for s in streams]
            for i in range(per):  # markets interleaved, each market's trades in order
                for k, stream in enumerate(part):
                    t = stream[i]._replace(symbol=f"{PREFIX[group]}{k:03d}USDT")
                    producer.send(topic, key=t.key, value=t.encode())
        producer.flush(300)
    finally:
        producer.close()
    logs = ROOT / "bench-results" / "alerts-chain-logs"
    logs.mkdir(parents=True, exist_ok=True)
    rates: dict[str, list[float]] = {"rules": [], "none": []}
    rows: dict[str, int] = {"rules": 0, "none": 0}
    try:
        for r in range(opts.chain_rounds):
            for group in ("rules", "none") if r % 2 == 0 else ("none", "rules"):
                like = f"{PREFIX[group]}%"
                with connection.cursor() as cur:
                    cur.execute("SELECT coalesce(max(id), 0) FROM analytics_trade")
                    (after,) = cur.fetchone() or (0,)
                env = dict(
                    os.environ,
                    KAFKA_TRADES_TOPIC=topics[(group, r)],
                    KAFKA_DLQ_TOPIC=f"{topics[(group, r)]}.dlq",
                    KAFKA_CONSUMER_GROUP=f"bench-alerts-{run}-{group}-{r}",
                )
                chain = Chain(env, logs)
                name = f"consume_trades-{group}-{r}"
                chain.start(name, manage("consume_trades", "--batch-size", str(opts.batch_size)))
                try:
                    deadline = time.monotonic() + opts.chain_timeout
                    while True:
                        time.sleep(0.5)
                        chain.check_alive([name])
                        with connection.cursor() as cur:
                            cur.execute(
                                "SELECT count(*), extract(epoch FROM max(stored_at) - min(stored_at)) "
                                "FROM analytics_trade WHERE id > %s AND symbol LIKE %s",
                                [after, like],
                            )
                            count, span = cur.fetchone() or (0, None)
                        if count >= per * opts.markets:
                            break
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{name}: {count} of {per * opts.markets} rows after the timeout")
                finally:
                    chain.stop()
                rows[group] += int(count)
                rates[group].append(round(int(count) / max(float(span or 0), 1e-6), 1))
                print(f"chain round {r} {group}: {rates[group][-1]:,.0f} rows/s", file=sys.stderr)
    finally:
        delete_topics(admin_client, [*topics.values(), *(f"{t}.dlq" for t in topics.values())])
        subprocess.run(manage("shell", "-c", "from cryptoproject.celery import app; app.control.purge()"), check=False)
    result.chain_rounds = opts.chain_rounds
    result.chain_rows = rows
    result.chain_rows_per_s = rates
    mean = {g: sum(v) / len(v) for g, v in rates.items()}
    result.chain_ratio_rules_vs_none = mean["rules"] / mean["none"]


def main(argv: list[str] | None = None) -> int:
    """Run, write ``--output`` and print the table; 0 when the firings match the brute force."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markets", type=int, default=100)
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--batches", type=int, default=60, help="batches per group (the first --warmup apart)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--check-markets", type=int, default=5, help="markets whose every firing is brute-forced")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument(
        "--channel", default="in_app", help="every rule's channel (none: no delivery rows, the evaluation alone)"
    )
    parser.add_argument("--chain-rounds", type=int, default=2, help="rounds of the consumer chain per group (0: none)")
    parser.add_argument("--chain-round-size", type=int, default=150_000, help="trades per group and round")
    parser.add_argument("--chain-timeout", type=float, default=600.0, help="seconds allowed per consumer run")
    parser.add_argument("--replay", default=str(DEFAULT_REPLAY))
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results" / "alerts.json")
    opts = parser.parse_args(argv)
    bench_environment("_bench_alerts", opts.redis_db)
    import django

    django.setup()
    result = run(opts)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(asdict(result), indent=2))
    print(
        f"store chain, {result.markets} markets per group, {opts.batch_size}-trade batches, {opts.batches} batches, "
        f"channel {opts.channel}"
    )
    print(f"{'chain':<28}{'rows/s':>12}{'statements/batch':>20}")
    names = {"rules": f"{result.rules:,} rules", "none": "no rule", "plain": "store alone (no announce)"}
    for g in GROUPS:
        print(f"{names[g]:<28}{result.rows_per_s[g]:>12,.0f}{result.statements_per_batch[g]:>20.1f}")
    print(
        f"rules / none: {result.ratio_rules_vs_none:.1%} (target >= 90 %); "
        f"none / plain: {result.ratio_none_vs_plain:.1%}"
    )
    if result.chain_rounds:
        means = {g: sum(v) / len(v) for g, v in result.chain_rows_per_s.items()}
        print(
            f"consumer chain (Kafka -> consume_trades -> PostgreSQL), {result.chain_rounds} rounds: "
            f"{result.rules:,} rules {means['rules']:,.0f} rows/s, no rule {means['none']:,.0f} rows/s; "
            f"rules / none: {result.chain_ratio_rules_vs_none:.1%} (target >= 90 %)"
        )
    print(f"alerts {result.alerts:,}, deliveries {result.deliveries:,}, suppressed {result.suppressed:,}")
    print(
        f"brute force: {result.checked_rules} rules of {result.checked_markets} markets "
        f"{'match' if result.firings_match else 'DIFFER: ' + '; '.join(result.mismatches[:5])}"
    )
    print(f"load average {result.load_avg}")
    return 0 if result.firings_match else 1


if __name__ == "__main__":
    sys.exit(main())
