"""``make bench-history`` (import half): history import rates next to a plain COPY into the same table.

In its own database (``<name>_bench_history``), emptied before each measurement:
- klines: the 55 bundled monthly BTCUSDT 1h zips (39,638 candles), downloaded over HTTP from an in-process mirror
  into a fresh cache, verified, parsed and upserted with rollups (4h, 1d): candles/s, cold (download) and warm
  (from the cache, the median of ``--reps`` runs, each next to a plain ``COPY`` of the same rows straight into
  ``analytics_candle``);
- trades: archive trades zips (``id,price,qty,quote_qty,time,is_buyer_maker,is_best_match``) made from the bundled
  real Binance trades (data/binance-spot-ws, looped with shifted ids and times to ``--trades`` rows, one zip per
  100,000), imported through the live COPY path with their candles: trade rows/s; beside it a plain ``COPY`` of the
  same rows into ``analytics_trade``;
- the process's peak RSS (VmHWM).
Results go to ``bench-results/history-import.json`` and a table on stdout. The machine is shared: figures are noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shutil
import statistics
import tempfile
import time
import zipfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, peak_rss_mb
from benchmarks.pipeline import bench_environment, reset_tables
from cryptoproject.timeutil import ms_to_datetime, us_to_datetime

BUNDLE = ROOT / "data" / "binance-klines"
RECORDINGS = [ROOT / "data" / "binance-spot-ws" / n for n in ("btcusdt_20240808.gz", "btcusdt_20240809.gz")]


def make_trade_zips(folder: Path, count: int, per_file: int = 100_000) -> list[Path]:
    """Archive-layout trades zips (with CHECKSUMs) holding ``count`` real trades, looped with shifted ids/times."""
    from simulator.feed import looped
    from simulator.replay import read_many

    trades = list(itertools.islice(looped(lambda: read_many(RECORDINGS)), count))
    out = folder / "data/spot/daily/trades/BTCUSDT"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, start in enumerate(range(0, len(trades), per_file)):
        day = date(2024, 8, 8) + timedelta(days=n)
        name = f"BTCUSDT-trades-{day.isoformat()}.zip"
        lines = [
            f"{t.trade_id},{t.price},{t.quantity},{Decimal(t.price) * Decimal(t.quantity)},{t.trade_time},"
            f"{'True' if t.is_buyer_maker else 'False'},True"
            for t in trades[start : start + per_file]
        ]
        path = out / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(name.replace(".zip", ".csv"), "\n".join(lines) + "\n")
        path.with_name(name + ".CHECKSUM").write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}")
        paths.append(path)
    return paths


def plain_copy_candles(rows: list[tuple[Any, ...]]) -> float:
    """Seconds to COPY ``rows`` straight into analytics_candle (no parsing, no upsert, no rollup)."""
    from django.db import connection, transaction

    reset_tables()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        sql = (
            "COPY analytics_candle (exchange, symbol, interval, open_time, open, high, low, close, volume, "
            "quote_volume, trade_count, vwap, source, close_time) FROM STDIN"
        )
        with cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    return time.perf_counter() - started


def plain_copy_trades(rows: list[tuple[Any, ...]]) -> float:
    """Seconds to COPY ``rows`` straight into analytics_trade."""
    from django.db import connection, transaction

    reset_tables()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        sql = (
            "COPY analytics_trade (exchange, symbol, trade_id, price, quantity, is_buyer_maker, traded_at, "
            "received_at) FROM STDIN"
        )
        with cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    return time.perf_counter() - started


def run(trades: int, reps: int = 3) -> dict[str, Any]:
    """Time cold and warm kline imports and a trade import against plain COPY, from the bundled archive mirror."""
    from django.db import connection

    from history.mirror import start_in_thread
    from history.parse import csv_rows, parse_kline, parse_trade
    from history.run import ImportRequest, run_import

    today = date(2026, 1, 1)
    report: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    mirror = start_in_thread(BUNDLE)
    try:
        klines = ImportRequest(
            symbol="BTCUSDT",
            interval="1h",
            start=date(2017, 8, 1),
            end=date(2022, 2, 28),
            base_url=mirror.url,
            cache_dir=work / "cache",
            concurrency=4,
            indicators=False,
        )
        reset_tables()
        cold = run_import(klines, today=today)
        with connection.cursor() as cursor:
            cursor.execute("SELECT interval, count(*) FROM analytics_candle GROUP BY 1 ORDER BY 1")
            stored = dict(cursor.fetchall())
        rows = []
        for path in sorted((work / "cache").rglob("*.zip")):
            for r in csv_rows(path):
                k = parse_kline(r)
                rows.append(
                    (
                        "binance",
                        "BTCUSDT",
                        "1h",
                        us_to_datetime(k.open_time_us),
                        k.open,
                        k.high,
                        k.low,
                        k.close,
                        k.volume,
                        k.quote_volume,
                        k.trade_count,
                        k.close,
                        "imported",
                        us_to_datetime(k.close_time_us),
                    )
                )
        # The shared machine is noisy: warm import and plain COPY alternate `reps` times; medians are reported.
        warm_runs, copy_runs = [], []
        for _ in range(reps):
            reset_tables()
            warm_runs.append(run_import(klines, today=today).seconds)
            copy_runs.append(plain_copy_candles(rows))
        warm_s, copy_s = statistics.median(warm_runs), statistics.median(copy_runs)
        report["klines"] = {
            "files": cold.files,
            "candles": cold.rows,
            "stored_by_interval": stored,
            "cold_seconds": round(cold.seconds, 3),
            "cold_candles_per_s": round(cold.rows / cold.seconds),
            "warm_seconds_each": [round(x, 3) for x in warm_runs],
            "warm_candles_per_s": round(cold.rows / warm_s),
            "plain_copy_seconds_each": [round(x, 3) for x in copy_runs],
            "plain_copy_candles_per_s": round(len(rows) / copy_s),
            "warm_vs_copy": round(copy_s / warm_s, 3),
        }
        mirror.shutdown()
        mirror.server_close()
        trade_root = work / "trades-mirror"
        zips = make_trade_zips(trade_root, trades)
        mirror = start_in_thread(trade_root)
        trade_request = ImportRequest(
            symbol="BTCUSDT",
            kind="trades",
            start=date(2024, 8, 8),
            end=date(2024, 8, 8) + timedelta(len(zips) - 1),
            base_url=mirror.url,
            cache_dir=work / "trade-cache",
            concurrency=4,
            indicators=False,
        )
        trade_rows = []
        for path in zips:
            for r in csv_rows(path):
                t = parse_trade(r)
                at = ms_to_datetime(t.time_ms)
                trade_rows.append(("binance", "BTCUSDT", t.trade_id, t.price, t.quantity, t.is_buyer_maker, at, at))
        import_runs, trade_copy_runs = [], []
        for _ in range(reps):  # the first run downloads, the others read the cache
            reset_tables()
            imported = run_import(trade_request, today=today)
            import_runs.append(imported.seconds)
            trade_copy_runs.append(plain_copy_trades(trade_rows))
        import_s, trade_copy_s = statistics.median(import_runs), statistics.median(trade_copy_runs)
        report["trades"] = {
            "files": imported.files,
            "rows": imported.rows,
            "written": imported.written,
            "seconds_each": [round(x, 3) for x in import_runs],
            "rows_per_s": round(imported.rows / import_s),
            "plain_copy_seconds_each": [round(x, 3) for x in trade_copy_runs],
            "plain_copy_rows_per_s": round(len(trade_rows) / trade_copy_s),
            "import_vs_copy": round(trade_copy_s / import_s, 3),
        }
        reset_tables()
    finally:
        mirror.shutdown()
        mirror.server_close()
        shutil.rmtree(work, ignore_errors=True)
    report["peak_rss_mb"] = round(peak_rss_mb(_self_pid()), 1)
    return report


def _self_pid() -> int:
    import os

    return os.getpid()


def main(argv: list[str] | None = None) -> int:
    """Run the import benchmark in its own database, write ``bench-results/history-import.json`` and print it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=500_000, help="trade rows to import (default 500,000)")
    parser.add_argument("--reps", type=int, default=3, help="warm klines import / plain COPY pairs (medians)")
    parser.add_argument("--redis-db", type=int, default=13)
    opts = parser.parse_args(argv)
    bench_environment("_bench_history", opts.redis_db)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    report = run(opts.trades, opts.reps)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "history-import.json").write_text(json.dumps(report, indent=2, default=str))
    k, t = report["klines"], report["trades"]
    print(
        f"klines  {k['candles']:>9,} candles  cold {k['cold_candles_per_s']:>9,}/s"
        f"  warm {k['warm_candles_per_s']:>9,}/s"
        f"  plain COPY {k['plain_copy_candles_per_s']:>9,}/s  (warm = {k['warm_vs_copy']:.0%} of COPY)"
    )
    print(
        f"trades  {t['rows']:>9,} rows     import {t['rows_per_s']:>9,}/s"
        f"  plain COPY {t['plain_copy_rows_per_s']:>9,}/s  ({t['import_vs_copy']:.0%} of COPY)"
    )
    print(f"peak RSS {report['peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
