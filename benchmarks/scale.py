"""``make bench-scale``: how storage cost grows as the trades table grows, and a many-symbol consumer workload.

In its own database (``<name>_bench_scale``), for each table size in ``--sizes`` (rows already stored, spread over
the ``--days`` days before now across ``--symbols`` symbols, written server-side by ``generate_series``):

- **insert rate** through the consumer's own store path (:func:`analytics.storage.store_trades`, batches of
  5,000 real trades from the bundled recording, stored at the present time): rows/s, the median of ``--reps`` (5)
  passes, each after a CHECKPOINT (the fill's I/O is setup, not workload), interleaved with as many passes into an
  empty trades table in a second database (``<name>_bench_scale_ref``) on the same server: the reference, measured
  beside every size (target: >= 80% of it at the largest size);
- at the largest size: **footprint** (table and index bytes per trade), **query latency** p50/p99 of the
  dashboard's and API's main queries (latest trades of a symbol through the API's keyset page, one day of 1m
  candles, whale alerts of a symbol), and **retention** of one day (dropping its partition) next to the design
  it replaced measured on the same data (a batched DELETE of the next day's rows, 10,000 per statement);
- a **many-symbol workload**: ``--mix-trades`` real trades spread over ``--symbols`` symbols (the bundled
  recording looped with shifted ids and distinct symbol names) put on a topic of ``--kafka-partitions``
  partitions first (keyed by symbol, as ingest keys them), then drained by 1, 2 and 4 ``consume_trades``
  processes: trades/s from their first commit to an empty lag (start-up reported apart), the peak lag, and the
  records per partition (the balance keying by symbol gives).

Results go to ``bench-results/scale.json`` (``insert_rows_per_s`` keyed by the size, ``retention_day_s``, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.harness import delete_topics, manage
from benchmarks.pipeline import (
    DEFAULT_REPLAY,
    ROOT,
    Chain,
    bench_database_url,
    bench_environment,
    ensure_database,
    percentile,
    replay_trades,
    reset_tables,
)
from cryptoproject.timeutil import datetime_to_ms

SYMBOL = "S{:03d}USDT"
_FILL = """
INSERT INTO analytics_trade (exchange, symbol, trade_id, price, quantity, is_buyer_maker, traded_at, received_at)
SELECT 'binance', 'S' || lpad((g %% %(symbols)s)::text, 3, '0') || 'USDT', g,
       60000 + (g %% 1000) * 0.01, 0.001 + (g %% 50) * 0.0001, g %% 2 = 0,
       %(start)s + (g - %(first)s::bigint) * %(step)s::bigint * interval '1 microsecond',
       %(start)s + (g - %(first)s::bigint) * %(step)s::bigint * interval '1 microsecond'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) g
"""


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm  # type: ignore[import-untyped]  # no types-tqdm pinned

    return tqdm(total=total, desc=desc, unit="row", unit_scale=True, file=sys.stderr)


def fill(rows: int, start_id: int, start: datetime, end: datetime, symbols: int, chunk: int = 2_000_000) -> None:
    """Add ``rows`` synthetic trades (ids from ``start_id``) spread evenly over ``start..end``, in chunks."""
    from django.db import connection

    from analytics import partitions

    partitions.ensure_partitions(start, end)
    step_us = max(1, int((end - start).total_seconds() * 1_000_000 / max(rows, 1)))
    bar = _progress(rows, "filling")
    done = 0
    while done < rows:
        n = min(chunk, rows - done)
        first = start_id + done
        chunk_start = start + timedelta(microseconds=done * step_us)
        with connection.cursor() as cur:
            cur.execute(
                _FILL,
                {"symbols": symbols, "start": chunk_start, "first": first, "last": first + n - 1, "step": step_us},
            )
        done += n
        bar.update(n)
    bar.close()
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE analytics_trade")
    settle()


def settle() -> None:
    """Write the fill's dirty pages out before a measurement (CHECKPOINT), so the measured inserts do not pay for
    the setup's I/O. Needs the pg_checkpoint role (the local stack grants it); without it, wait a while instead."""
    from django.db import DatabaseError, connection

    try:
        with connection.cursor() as cur:
            cur.execute("CHECKPOINT")
    except DatabaseError as exc:
        print(f"CHECKPOINT refused ({str(exc).splitlines()[0]}); waiting 30 s instead", file=sys.stderr)
        time.sleep(30)


def live_batches(count: int, symbols: int, id_base: int, now: datetime, size: int = 5000) -> list[list[Any]]:
    """``count`` real trades from the bundled recording as the consumer would store them: spread over the
    symbols, ids above every filled one, times from ``now`` on."""
    base = replay_trades(DEFAULT_REPLAY)
    now_ms = datetime_to_ms(now)
    records = []
    for i in range(count):
        t = base[i % len(base)]
        ms = now_ms + i  # one trade a millisecond: today's partition, in time order
        records.append(
            t._replace(
                symbol=SYMBOL.format(i % symbols),
                trade_id=id_base + i,
                trade_time=ms,
                event_time=ms,
                received_at=ms,
            )
        )
    return [records[i : i + size] for i in range(0, len(records), size)]


REFERENCE = "reference"  # the connection alias of the empty reference table's database


def add_reference_database(name: str, now: datetime) -> None:
    """A second connection alias, :data:`REFERENCE`, to database ``name`` on the same server, migrated, with its
    trades table empty and the partitions around ``now`` made."""
    from django.core.management import call_command
    from django.db import connections

    from analytics import partitions

    connections.settings[REFERENCE] = dict(connections.settings["default"], NAME=name)
    call_command("migrate", database=REFERENCE, verbosity=0, interactive=False)
    with connections[REFERENCE].cursor() as cur:
        cur.execute("TRUNCATE analytics_trade, analytics_candle, analytics_whalealert CASCADE")
    partitions.ensure_partitions(now - timedelta(hours=3), now + timedelta(days=1), REFERENCE)


def insert_rates(passes: list[list[list[Any]]], filled_is_empty: bool) -> tuple[list[float], list[float]]:
    """Rows/s of ``store_trades`` into the filled table and into the empty reference table, one pass of each of
    ``passes`` (its batches each their own transaction, as the consumer commits them).

    The two are interleaved batch by batch (alternating which goes first), so that both meet the same machine:
    on this VM identical passes differ by up to 30%, a batch's neighbour by far less. Each pass starts after a
    CHECKPOINT (the cluster's, shared by both) with the reference table emptied; the filled table is emptied too
    when it stands for size 0, otherwise it keeps the rows of the earlier passes (every pass brings trades of its
    own, a few percent of the table): deleting them would leave dead index pages that slow every later pass.
    """
    from django.db import connection, connections

    from analytics.storage import store_trades

    filled: list[float] = []
    reference: list[float] = []
    for batches in passes:
        with connections[REFERENCE].cursor() as cur:
            cur.execute("TRUNCATE analytics_trade")
        if filled_is_empty:
            with connection.cursor() as cur:
                cur.execute("TRUNCATE analytics_trade")
        settle()
        spent = {"default": 0.0, REFERENCE: 0.0}
        rows = {"default": 0, REFERENCE: 0}
        for i, batch in enumerate(batches):
            for alias in ("default", REFERENCE) if i % 2 == 0 else (REFERENCE, "default"):
                started = time.perf_counter()
                rows[alias] += store_trades(batch, using=alias).inserted
                spent[alias] += time.perf_counter() - started
        filled.append(rows["default"] / spent["default"])
        reference.append(rows[REFERENCE] / spent[REFERENCE])
    return filled, reference


def footprint() -> dict[str, Any]:
    """Table and index bytes of the trades partitions, per trade."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT coalesce(sum(pg_table_size(i.inhrelid)), 0), coalesce(sum(pg_indexes_size(i.inhrelid)), 0),
                   (SELECT count(*) FROM analytics_trade), count(*)
            FROM pg_inherits i WHERE i.inhparent = 'analytics_trade'::regclass
            """
        )
        table, index, rows, parts = (int(v) for v in cur.fetchone())
    return {
        "rows": rows,
        "partitions": parts,
        "table_bytes": table,
        "index_bytes": index,
        "table_bytes_per_trade": round(table / rows, 1) if rows else None,
        "index_bytes_per_trade": round(index / rows, 1) if rows else None,
    }


def fill_candles_and_alerts(symbols: int, start: datetime, days: int) -> None:
    """1m candles of every symbol over the days, and one whale alert per symbol and hour, server-side."""
    from django.db import connection

    minutes = days * 1440
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO analytics_candle (exchange, symbol, interval, open_time, open, high, low, close, volume,
                                          quote_volume, trade_count, vwap, source)
            SELECT 'binance', 'S' || lpad(s::text, 3, '0') || 'USDT', '1m', %(start)s + m * interval '1 minute',
                   60000, 60010, 59990, 60005, 1.5, 90000, 40, 60001, 'live'
            FROM generate_series(0, %(symbols)s - 1) s, generate_series(0, %(minutes)s - 1) m
            ON CONFLICT DO NOTHING
            """,
            {"start": start, "symbols": symbols, "minutes": minutes},
        )
        cur.execute(
            """
            INSERT INTO analytics_whalealert
                (exchange, symbol, trade_id, price, quantity, notional, side, threshold, traded_at)
            SELECT 'binance', 'S' || lpad(s::text, 3, '0') || 'USDT', h, 60000, 2, 120000, 'buy', 100000,
                   %(start)s + h * interval '1 hour'
            FROM generate_series(0, %(symbols)s - 1) s, generate_series(0, %(hours)s - 1) h
            ON CONFLICT DO NOTHING
            """,
            {"start": start, "symbols": symbols, "hours": days * 24},
        )
        cur.execute("VACUUM ANALYZE analytics_candle")
        cur.execute("VACUUM ANALYZE analytics_whalealert")


def query_latency(symbols: int, start: datetime, days: int, runs: int = 200) -> dict[str, dict[str, float | None]]:
    """p50/p99 (ms) of the main read queries, each on a random symbol (and day)."""
    from analytics.models import Candle, Trade, WhaleAlert
    from dashboard.api.pagination import keyset_page

    rng = random.Random(7)

    def latest_trades() -> None:
        queryset = Trade.objects.filter(exchange="binance", symbol=SYMBOL.format(rng.randrange(symbols)))
        keyset_page(queryset, "traded_at", "trade_id", None, 100)

    def day_of_candles() -> None:
        day = start + timedelta(days=rng.randrange(days))
        list(
            Candle.objects.filter(
                exchange="binance",
                symbol=SYMBOL.format(rng.randrange(symbols)),
                interval="1m",
                open_time__gte=day,
                open_time__lt=day + timedelta(days=1),
            ).order_by("open_time")
        )

    def whales_of_symbol() -> None:
        queryset = WhaleAlert.objects.filter(exchange="binance", symbol=SYMBOL.format(rng.randrange(symbols)))
        keyset_page(queryset, "traded_at", "id", None, 100)

    result = {}
    for name, query in (
        ("latest_trades_of_symbol", latest_trades),
        ("one_day_of_1m_candles", day_of_candles),
        ("whale_alerts_of_symbol", whales_of_symbol),
    ):
        query()  # warm the plan cache and the pages once
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            query()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        result[name] = {"p50_ms": _r(percentile(times, 0.50)), "p99_ms": _r(percentile(times, 0.99))}
    return result


def retention_day(oldest: datetime) -> dict[str, Any]:
    """Seconds to apply retention to one day (the oldest partition dropped), next to the replaced design on the
    next day: its rows deleted by the old batched DELETE (10,000 per statement), measured on the same data."""
    from django.conf import settings
    from django.db import connection

    from analytics import partitions
    from analytics.retention import apply_retention

    parts = partitions.partitions()
    first, second = parts[0], parts[1]
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {first.name}")
        first_rows = cur.fetchone()[0]
        cur.execute(f"SELECT count(*) FROM {second.name}")
        second_rows = cur.fetchone()[0]
    now = first.end + timedelta(days=settings.TRADE_RETENTION_DAYS)  # exactly the first partition expires
    started = time.perf_counter()
    result = apply_retention(now=now)
    drop_s = time.perf_counter() - started
    assert result.partitions == [first.name], result
    started = time.perf_counter()
    deleted = 0
    while True:
        with connection.cursor() as cur:
            cur.execute(
                f"DELETE FROM {second.name} WHERE id IN"
                f" (SELECT id FROM {second.name} WHERE traded_at < %s LIMIT 10000)",
                [second.end],
            )
            deleted += cur.rowcount
            if cur.rowcount < 10000:
                break
    delete_s = time.perf_counter() - started
    return {
        "retention_day_s": round(drop_s, 4),
        "retention_day_rows": first_rows,
        "reference_batched_delete_day_s": round(delete_s, 2),
        "reference_batched_delete_rows": deleted,
        "reference_day_rows": second_rows,
    }


def many_symbols(consumers: int, trades: int, symbols: int, kafka_partitions: int, env: dict[str, str]) -> dict:
    """``trades`` over ``symbols`` symbols on a topic of ``kafka_partitions``, stored by ``consumers`` processes."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from analytics.models import Trade
    from cryptoproject.kafka import TopicSpec, admin_client, client_config, ensure_topics

    run = uuid.uuid4().hex[:8]
    topic, dlq, group = f"scale.trades.{run}", f"scale.dlq.{run}", f"scale-{run}"
    ensure_topics([TopicSpec(topic, kafka_partitions, {}), TopicSpec(dlq, 1, {})])
    reset_tables()
    base = replay_trades(DEFAULT_REPLAY)
    id_span = base[-1].trade_id - base[0].trade_id + 1
    producer = KafkaProducer(**client_config(), acks="all", linger_ms=20, batch_size=512 * 1024)
    now_ms = int(time.time() * 1000)
    for i in range(trades):
        loop, r = divmod(i, len(base))
        t = base[r]._replace(symbol=SYMBOL.format(i % symbols))
        t = t._replace(trade_id=t.trade_id + loop * id_span, received_at=now_ms)
        producer.send(topic, key=t.key, value=t.encode())
    producer.flush(300)
    producer.close()
    probe = KafkaConsumer(**client_config(), group_id=group, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(kafka_partitions)]
    ends = probe.end_offsets(tps)
    per_partition = [ends[tp] for tp in tps]
    logs = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    chain = Chain(dict(env, KAFKA_TRADES_TOPIC=topic, KAFKA_DLQ_TOPIC=dlq, KAFKA_CONSUMER_GROUP=group), logs)
    max_lag = 0
    started = time.time()
    first_commit: float | None = None  # the rate runs from the first commit: process start-up is not storage
    try:
        for i in range(consumers):
            chain.start(f"consume_trades-{i}", manage("consume_trades", "--batch-size", "5000", "--batch-ms", "200"))
        names = [f"consume_trades-{i}" for i in range(consumers)]
        while True:
            time.sleep(0.5)
            chain.check_alive(names)
            committed = [probe.committed(tp) or 0 for tp in tps]
            if first_commit is None and any(committed):
                first_commit = time.time()
            lag = sum(per_partition) - sum(committed)
            max_lag = max(max_lag, lag)
            if lag == 0:
                break
            if time.time() - started > 1800:
                raise RuntimeError(f"{consumers} consumers did not finish within 30 minutes (lag {lag})")
        seconds = time.time() - (first_commit or started)
        startup = (first_commit or started) - started
    finally:
        chain.stop()
        probe.close()
        delete_topics(admin_client, [topic, dlq])
    stored = Trade.objects.count()
    mean = statistics.mean(per_partition)
    return {
        "consumers": consumers,
        "trades": trades,
        "stored": stored,
        "seconds": round(seconds, 2),
        "startup_seconds": round(startup, 2),
        "trades_per_s": round(stored / seconds, 1),
        "max_lag": max_lag,
        "records_per_partition": per_partition,
        "partition_max_over_mean": round(max(per_partition) / mean, 3),
        "partition_min_over_mean": round(min(per_partition) / mean, 3),
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main(argv: list[str] | None = None) -> int:
    """Run the scale measurements, write the JSON report (``--output``) and print a summary; 0 when done."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,10000000,50000000", help="table sizes (rows) to measure inserts at")
    parser.add_argument("--measure-rows", type=int, default=200_000, help="rows stored per insert measurement")
    parser.add_argument("--reps", type=int, default=5, help="insert passes per size, into each of the two tables")
    parser.add_argument("--days", type=int, default=30, help="days the filled rows spread over (one partition each)")
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--mix-trades", type=int, default=300_000, help="trades of the many-symbol workload")
    parser.add_argument("--kafka-partitions", type=int, default=12)
    parser.add_argument("--consumers", default="1,2,4")
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results" / "scale.json")
    opts = parser.parse_args(argv)
    sizes = sorted(int(s) for s in opts.sizes.split(",") if s.strip())
    env = bench_environment("_bench_scale", opts.redis_db)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from analytics import partitions

    # The reference: an empty trades table in a database of its own on the same server, measured interleaved with
    # the filled one at every size (machine load drifts over a half-hour run; a ratio of neighbours does not).
    now = datetime.now(UTC)
    reference_url = bench_database_url(env["DATABASE_URL"], "_ref")
    ensure_database(reference_url)
    add_reference_database(urlsplit(reference_url).path.lstrip("/"), now)
    # The measured trades follow the fill within today's partition (3 sizes x 5 passes x 200,000 trades, one a
    # millisecond, take 50 minutes of market time): late in the day, the whole layout moves back 3 hours.
    anchor = now if now.hour < 22 else now - timedelta(hours=3)
    start = (anchor - timedelta(days=opts.days)).replace(hour=0, minute=0, second=0, microsecond=0)
    fill_end = anchor - timedelta(minutes=5)
    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cur:
        cur.execute("TRUNCATE analytics_trade, analytics_candle, analytics_whalealert CASCADE")
    partitions.ensure_partitions(now, now + timedelta(days=1))
    report: dict[str, Any] = {
        "sizes": sizes,
        "measure_rows": opts.measure_rows,
        "days": opts.days,
        "symbols": opts.symbols,
        "insert_rows_per_s": {},
        "insert_reference_rows_per_s": {},
        "insert_vs_empty": {},
    }
    filled = 0
    id_base = 10**12
    market = anchor + timedelta(minutes=1)
    for size in sizes:
        if size > filled:
            fill(size - filled, filled, start, fill_end, opts.symbols)
            filled = size
        passes = []
        for _ in range(opts.reps):
            passes.append(live_batches(opts.measure_rows, opts.symbols, id_base, market))
            id_base += opts.measure_rows
            market += timedelta(milliseconds=opts.measure_rows)
        runs, reference_runs = insert_rates(passes, filled_is_empty=size == 0)
        if size == 0:  # the table was emptied before each pass: empty it after the last one too
            with connection.cursor() as cur:
                cur.execute("TRUNCATE analytics_trade")
        else:
            filled += opts.reps * opts.measure_rows
        rate, reference = statistics.median(runs), statistics.median(reference_runs)
        key = str(size)
        report["insert_rows_per_s"][key] = round(rate, 1)
        report["insert_reference_rows_per_s"][key] = round(reference, 1)
        report["insert_vs_empty"][key] = round(rate / reference, 3)
        report.setdefault("insert_runs", {})[key] = [round(r, 1) for r in runs]
        report.setdefault("insert_reference_runs", {})[key] = [round(r, 1) for r in reference_runs]
        print(
            f"insert at {size:>12,} rows: {rate:>10,.0f} rows/s; empty table beside it {reference:>10,.0f} rows/s"
            f" ({rate / reference:.0%}); runs {report['insert_runs'][key]} / {report['insert_reference_runs'][key]}",
            flush=True,
        )
    report["insert_largest_vs_empty"] = report["insert_vs_empty"][str(sizes[-1])]
    report["footprint"] = footprint()
    fill_candles_and_alerts(opts.symbols, start, opts.days)
    report["query_latency"] = query_latency(opts.symbols, start, opts.days)
    report.update(retention_day(start))
    report["many_symbols"] = [
        many_symbols(int(n), opts.mix_trades, opts.symbols, opts.kafka_partitions, env)
        for n in opts.consumers.split(",")
        if n.strip()
    ]
    report["machine"] = {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()}
    report["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "many_symbols"}, indent=2))
    for run in report["many_symbols"]:
        print(
            f"{run['consumers']} consumer(s): {run['trades_per_s']:>9,.0f} trades/s, max lag {run['max_lag']:,},"
            f" partitions max/mean {run['partition_max_over_mean']}, min/mean {run['partition_min_over_mean']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
