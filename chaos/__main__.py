"""``python -m chaos`` (``make chaos``): every fault scenario on a stack of its own, then the tables (trades, and
the order books of :mod:`chaos.books`).

The scenarios run on local stack 7 (``scripts/stack_env.sh 7``) and, for the broker loss, on stack 8 with a 3-node
Kafka cluster, so a running demo or test suite is never disturbed. Results go to ``bench-results/chaos.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from chaos import booktruth, truth
from chaos.books import BOOK_SCENARIOS, BookOptions, BookRow, book_scenarios, run_book_scenario
from chaos.books import table as book_table
from chaos.harness import RECORDINGS, ROOT, Options, Row, Stack, by_name, setup_database, stack_environment
from chaos.harness import run_scenario as run_one

COLUMNS = (
    ("scenario", 14),
    ("expected", 9),
    ("stored", 9),
    ("lost", 6),
    ("dup", 5),
    ("candles wrong", 14),
    ("whales", 8),
    ("dead letters", 13),
    ("alerts", 9),
    ("alerts lost/dup/extra/wrong", 10),
    ("suppressed", 10),
    ("outbox wrong", 6),
    ("unsent", 6),
    ("in-app wrong", 6),
    ("stored late", 6),
    ("recover s", 10),
    ("restarts", 22),
    ("peak RSS MB", 0),
)


def table(rows: list[Row]) -> str:
    """One line per scenario (the table of docs/RELIABILITY.md)."""
    head = "| " + " | ".join(name for name, _ in COLUMNS) + " | ok |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        rss = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r.peak_rss_mb.items()))
        restarts = ", ".join(f"{k} {v}" for k, v in sorted(r.restarts.items())) or "-"
        cells = [
            r.scenario,
            f"{r.expected:,}",
            f"{r.stored:,}",
            str(r.missing),
            str(r.duplicated + r.unexpected),
            f"{r.candles_wrong} of {r.candles_expected}",
            f"{r.whales}/{r.whales_expected}",
            f"{r.dead_letters}/{r.dead_letters_expected}",
            f"{r.alerts}/{r.alerts_expected}",
            f"{r.alerts_missing}/{r.alerts_duplicated}/{r.alerts_unexpected}/{r.alerts_wrong}",
            f"{r.suppressed}/{r.suppressed_expected}",
            str(r.deliveries_wrong),
            str(r.deliveries_unsent),
            str(r.notifications_wrong),
            str(r.stored_late),
            "-" if r.recover_s is None else f"{r.recover_s:.1f}",
            restarts,
            rss,
        ]
        lines.append("| " + " | ".join(cells) + f" | {'yes' if r.ok else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios on local stacks, print the table and write the JSON; 0 only when every scenario passed."""
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("scenarios", nargs="*", help="names (default: all)")
    parser.add_argument("--trades", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=4000.0, help="trades/s offered by the simulator")
    parser.add_argument("--kafka-outage", type=float, default=120.0)
    parser.add_argument(
        "--kafka-down-long",
        type=float,
        default=float(os.environ.get("KAFKA_DOWN_LONG_S") or 600.0),
        help="s the broker is away in kafka-down-long (default: KAFKA_DOWN_LONG_S, else 600)",
    )
    parser.add_argument("--postgres-outage", type=float, default=60.0)
    parser.add_argument("--redis-outage", type=float, default=30.0)
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="s to wait for the rest after the market")
    parser.add_argument("--book-speed", type=float, default=6.0, help="x the recorded pace of the book scenarios")
    parser.add_argument(
        "--book-kafka-outage", type=float, default=30.0, help="s the broker is away in books-kafka-down"
    )
    parser.add_argument("--stack", type=int, default=7, help="local stack number (the cluster uses N+1)")
    parser.add_argument("--keep", action="store_true", help="leave the stacks running at the end")
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results/chaos.json")
    args = parser.parse_args(argv)
    opts = Options(
        trades=args.trades,
        rate=args.rate,
        kafka_outage_s=args.kafka_outage,
        kafka_down_long_s=args.kafka_down_long,
        postgres_outage_s=args.postgres_outage,
        redis_outage_s=args.redis_outage,
        drain_timeout_s=args.drain_timeout,
        extra_env={"CELERY_VISIBILITY_TIMEOUT": "60"},
    )
    book_names = {s.name for s in BOOK_SCENARIOS}
    named_books = [n for n in args.scenarios if n in book_names]
    named_trades = [n for n in args.scenarios if n not in book_names]
    scenarios = by_name(named_trades) if named_trades or not args.scenarios else []
    books = book_scenarios(named_books if args.scenarios else None)
    book_opts = BookOptions(speed=args.book_speed, kafka_outage_s=args.book_kafka_outage)
    expected = truth.workload(RECORDINGS, opts.trades) if scenarios else []
    workloads = {opts.trades: expected}  # a scenario with a workload of its own (kafka-down-long) gets its truth
    print(
        f"[chaos] {len(expected):,} trades, {len(truth.minute_bars(expected)):,} minutes, "
        f"{len(truth.whale_ids(expected, truth.Decimal('100000')))} whales; {len(scenarios)} scenario(s), "
        f"{len(books)} book scenario(s)",
        flush=True,
    )
    stacks: dict[int, Stack] = {}
    rows: list[Row] = []
    book_rows: list[BookRow] = []
    try:
        for scenario in scenarios:
            stack = stacks.get(scenario.brokers)
            if stack is None:
                number = args.stack if scenario.brokers == 1 else args.stack + 1
                stack = stacks[scenario.brokers] = Stack(stack_environment(number, scenario.brokers))
                stack.run("up")
                setup_database(stack)
            t0 = time.monotonic()
            print(f"[chaos] {scenario.name}: {scenario.description} ...", flush=True)
            sized = scenario.sized(opts)
            if sized.trades not in workloads:
                workloads[sized.trades] = truth.workload(RECORDINGS, sized.trades)
            row = run_one(scenario, sized, stack, workloads[sized.trades])
            rows.append(row)
            print(
                f"[chaos] {scenario.name}: {'ok' if row.ok else 'FAILED'} in {time.monotonic() - t0:.0f} s "
                f"{'; '.join(row.notes)}",
                flush=True,
            )
            # A stopped server must be back before the next scenario.
            stack.run("up")
        if books:
            book_truth = booktruth.BookTruth(booktruth.read_recording(RECORDINGS))
            stack = stacks.get(1)
            if stack is None:
                stack = stacks[1] = Stack(stack_environment(args.stack, 1))
                stack.run("up")
                setup_database(stack)
            for book_scenario in books:
                t0 = time.monotonic()
                print(f"[chaos] {book_scenario.name}: {book_scenario.description} ...", flush=True)
                book_row = run_book_scenario(book_scenario, book_opts, stack, book_truth)
                book_rows.append(book_row)
                print(
                    f"[chaos] {book_scenario.name}: {'ok' if book_row.ok else 'FAILED'} in "
                    f"{time.monotonic() - t0:.0f} s {'; '.join(book_row.notes)}",
                    flush=True,
                )
                stack.run("up")
    finally:
        if not args.keep:
            for stack in stacks.values():
                stack.run("down")
    if rows:
        print(table(rows))
    if book_rows:
        print(book_table(book_rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "options": {"trades": opts.trades, "rate": opts.rate, "book_speed": book_opts.speed},
                "rows": [r.as_dict() for r in rows],
                "books": [r.as_dict() for r in book_rows],
            },
            indent=2,
            default=str,
        )
    )
    return 0 if all(r.ok for r in rows) and all(r.ok for r in book_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
