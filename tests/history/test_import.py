"""History import against real PostgreSQL, over HTTP from an in-process mirror of the bundled archive files."""

from __future__ import annotations

import itertools
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from analytics.candles import recompute_candles
from analytics.models import Candle, IndicatorPoint, Trade
from analytics.storage import store_trades
from history.parse import csv_rows, parse_kline
from history.run import ImportRequest, RequestError, run_import
from ingest.records import TradeRecord
from simulator.replay import read_trades
from tests.conftest import DATA
from tests.history.conftest import BUNDLE, H1, M1, copy_into

pytestmark = pytest.mark.django_db(transaction=True)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TODAY = date(2026, 1, 1)
FIELDS = ("open_time", "open", "high", "low", "close", "volume", "quote_volume", "trade_count", "close_time")


def _request(url: str, tmp_path: Path, **kw) -> ImportRequest:
    kw.setdefault("symbol", "BTCUSDT")
    kw.setdefault("indicators", False)
    return ImportRequest(base_url=url, cache_dir=tmp_path / "cache", concurrency=3, **kw)


def _file_rows(*paths: Path) -> dict[datetime, tuple]:
    rows = {}
    for path in paths:
        for r in csv_rows(path):
            k = parse_kline(r)
            t = EPOCH + timedelta(microseconds=k.open_time_us)
            rows[t] = (
                t,
                Decimal(k.open),
                Decimal(k.high),
                Decimal(k.low),
                Decimal(k.close),
                Decimal(k.volume),
                Decimal(k.quote_volume),
                k.trade_count,
                EPOCH + timedelta(microseconds=k.close_time_us),
            )
    return rows


def _stored(interval: str) -> dict[datetime, tuple]:
    return {
        row[0]: row
        for row in Candle.objects.filter(exchange="binance", symbol="BTCUSDT", interval=interval).values_list(*FIELDS)
    }


def test_bundled_files_round_trip_exactly_and_larger_intervals_are_rolled_up(tmp_path, mirror):
    server = mirror(BUNDLE)
    h1 = run_import(
        _request(server.url, tmp_path, interval="1h", start=date(2017, 8, 1), end=date(2022, 2, 28)), today=TODAY
    )
    m1 = run_import(
        _request(server.url, tmp_path, interval="1m", start=date(2020, 1, 1), end=date(2020, 1, 3)), today=TODAY
    )
    # Three 1h klines carry no trade (outage bars: OHLC the previous close, volume 0): no candle, as live.
    assert (h1.files, h1.imported, h1.rows, h1.written, h1.empty) == (55, 55, 39_638, 39_635, 3)
    assert (m1.files, m1.rows, m1.written) == (3, 4_320, 4_320)
    assert not (h1.missing)
    assert not (h1.checksum_failures)
    assert not (h1.errors)
    assert not (h1.rejected_rows)
    # Every candle equals its file row, decimals exact, quirks (shortened close_time, off-hour bar) kept.
    expected_h1 = {t: v for t, v in _file_rows(*sorted(H1.glob("*.zip"))).items() if v[7] > 0}
    stored_h1 = _stored("1h")
    assert stored_h1 == expected_h1
    assert not Candle.objects.filter(trade_count=0).exists()
    assert "39635 written (0 unchanged, 3 without a trade not stored)" in "\n".join(h1.lines())
    assert _stored("1m") == _file_rows(*sorted(M1.glob("*.zip")))
    off_hour = [t for t in expected_h1 if t.minute or t.second]
    assert off_hour
    assert all(stored_h1[t][0] == t for t in off_hour)
    shortened = [v for v in expected_h1.values() if v[8] - v[0] < timedelta(hours=1) - timedelta(milliseconds=1)]
    assert shortened
    assert all(stored_h1[v[0]][8] == v[8] for v in shortened)
    assert set(Candle.objects.filter(interval__in=["1h", "1m"]).values_list("source", flat=True)) == {"imported"}
    # Gaps reported as the archive has them (27 outages, 126 missing hours), never filled.
    assert (h1.gaps.count, h1.gaps.missing) == (27, 126)
    assert (m1.gaps.count, m1.gaps.missing) == (0, 0)
    # A 1d candle rolled up from the 1h klines by the live rollup statement: exact sums, first open, last close.
    day = datetime(2021, 5, 19, tzinfo=UTC)
    bars = [v for t, v in sorted(expected_h1.items()) if day <= t < day + timedelta(days=1)]
    d1 = Candle.objects.get(symbol="BTCUSDT", interval="1d", open_time=day)
    assert d1.source == "rollup"
    assert (d1.open, d1.close) == (bars[0][1], bars[-1][4])
    assert (d1.high, d1.low) == (max(b[2] for b in bars), min(b[3] for b in bars))
    assert d1.volume == sum(b[5] for b in bars)
    assert d1.trade_count == sum(b[7] for b in bars)
    # The 1h rolled up from the imported 1m days never overwrote the imported 1h klines of those days.
    assert Candle.objects.get(interval="1h", open_time=datetime(2020, 1, 2, 5, tzinfo=UTC)).source == "imported"
    assert Candle.objects.filter(interval="15m").count() == 3 * 96


def test_rerunning_an_import_changes_nothing(tmp_path, mirror):
    server = mirror(BUNDLE)
    request = _request(
        server.url, tmp_path, interval="1m", start=date(2020, 1, 1), end=date(2020, 1, 3), indicators=True
    )
    first = run_import(request, today=TODAY)
    assert first.written == 4_320
    assert first.indicators > 0
    snapshot = list(Candle.objects.order_by("interval", "open_time").values())
    indicators = IndicatorPoint.objects.count()
    again = run_import(request, today=TODAY)
    assert (again.rows, again.written, again.cached) == (4_320, 0, 3)
    assert list(Candle.objects.order_by("interval", "open_time").values()) == snapshot  # updated_at included
    assert IndicatorPoint.objects.count() == indicators


def test_a_change_in_the_last_file_of_a_batch_recomputes_indicators_from_that_bar_only(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("BTCUSDT-1h-2018-01.zip", "BTCUSDT-1h-2018-02.zip"):
        lines = [",".join(r) for r in csv_rows(H1 / name)]
        (folder / name.replace(".zip", ".csv")).write_text("\n".join(lines) + "\n")
    request = ImportRequest(paths=(folder,), indicators=True)
    first = run_import(request, today=TODAY)
    assert first.indicators > 1000
    last = folder / "BTCUSDT-1h-2018-02.csv"
    rows = last.read_text().splitlines()
    fields = rows[-1].split(",")
    fields[4] = str(Decimal(fields[4]) + 1)  # the month's last close one dollar up, and the high with it
    fields[2] = str(max(Decimal(fields[2]), Decimal(fields[4])))
    last.write_text("\n".join([*rows[:-1], ",".join(fields)]) + "\n")
    again = run_import(request, today=TODAY)
    assert again.written == 1
    # One 1h bar changed, so did its 4h and 1d buckets: each series recomputed from its changed bar on (the last).
    assert again.indicators == 3


def test_tampered_zip_is_refused_by_its_checksum_and_nothing_of_it_is_stored(tmp_path, mirror):
    root = tmp_path / "mirror"
    copy_into(root, *sorted(M1.glob("*.zip")))
    tampered = root / "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-02.zip"
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    server = mirror(root)
    summary = run_import(
        _request(server.url, tmp_path, interval="1m", start=date(2020, 1, 1), end=date(2020, 1, 3)), today=TODAY
    )
    assert len(summary.checksum_failures) == 1
    assert "BTCUSDT-1m-2020-01-02.zip" in summary.checksum_failures[0]
    assert summary.imported == 2
    assert summary.rows == 2 * 1440
    day2 = Candle.objects.filter(
        open_time__gte=datetime(2020, 1, 2, tzinfo=UTC), open_time__lt=datetime(2020, 1, 3, tzinfo=UTC)
    )
    assert not day2.filter(interval="1m").exists()
    assert Candle.objects.filter(interval="1m").count() == 2 * 1440
    # The command names the file and fails (after importing the others).
    with pytest.raises(
        CommandError, match=r"^not everything was imported \(2 of 3 files\): 1 refused by its checksum$"
    ):
        call_command(
            "import_history",
            "--symbol",
            "BTCUSDT",
            "--interval",
            "1m",
            "--from",
            "2020-01-01",
            "--to",
            "2020-01-03",
            "--base-url",
            server.url,
            "--cache-dir",
            str(tmp_path / "cache2"),
            "--no-indicators",
        )


def test_a_404_day_is_reported_and_the_rest_imported(tmp_path, mirror):
    root = tmp_path / "mirror"
    copy_into(root, M1 / "BTCUSDT-1m-2020-01-01.zip", M1 / "BTCUSDT-1m-2020-01-03.zip")
    server = mirror(root)
    summary = run_import(
        _request(server.url, tmp_path, interval="1m", start=date(2020, 1, 1), end=date(2020, 1, 3)), today=TODAY
    )
    assert len(summary.missing) == 1
    assert "BTCUSDT-1m-2020-01-02.zip" in summary.missing[0]
    assert summary.imported == 2
    assert not summary.checksum_failures
    assert Candle.objects.filter(interval="1m").count() == 2 * 1440
    # The hole between the two days is a reported gap (1,440 missing bars), not filled in.
    assert (summary.gaps.count, summary.gaps.missing) == (1, 1440)
    assert any("missing" in line and "2020-01-02" in line for line in summary.lines())


def _trade_zip(folder: Path, name: str, trades: list[TradeRecord], micro: bool = False, header: bool = False) -> Path:
    lines = ["id,price,qty,quote_qty,time,is_buyer_maker,is_best_match"] if header else []
    for t in trades:
        time = t.trade_time * 1000 if micro else t.trade_time
        quote = Decimal(t.price) * Decimal(t.quantity)
        lines.append(f"{t.trade_id},{t.price},{t.quantity},{quote},{time},{t.is_buyer_maker},True")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name.replace(".zip", ".csv"), "\n".join(lines) + "\n")
    return path


def test_trades_go_through_the_live_copy_path_then_get_candles(tmp_path):
    recorded = list(read_trades(DATA / "binance-spot-ws" / "btcusdt_20240808.gz"))
    path = _trade_zip(tmp_path / "in", "BTCUSDT-trades-2024-08-08.zip", recorded)
    summary = run_import(ImportRequest(paths=(path,), indicators=False), today=TODAY)
    assert (summary.rows, summary.written, summary.gaps.count) == (9_757, 9_757, 0)
    assert summary.unverified == ["BTCUSDT-trades-2024-08-08.zip"]
    stored = {t.trade_id: t for t in Trade.objects.filter(symbol="BTCUSDT")}
    assert len(stored) == len(recorded)
    for r in recorded[::97]:
        s = stored[r.trade_id]
        assert (s.price, s.quantity, s.is_buyer_maker) == (Decimal(r.price), Decimal(r.quantity), r.is_buyer_maker)
        assert s.traded_at == EPOCH + timedelta(milliseconds=r.trade_time)
    live_like = {c.open_time: (c.open, c.close, c.volume, c.trade_count) for c in Candle.objects.filter(interval="1m")}
    assert sum(v[3] for v in live_like.values()) == 9_757
    assert set(Candle.objects.values_list("source", flat=True)) == {"live"}  # computed from stored trades
    # The same trades in µs with a header line, imported again: nothing changes.
    again = _trade_zip(tmp_path / "us", "BTCUSDT-trades-2024-08-08.zip", recorded, micro=True, header=True)
    rerun = run_import(ImportRequest(paths=(again,), indicators=False), today=TODAY)
    assert (rerun.rows, rerun.written) == (9_757, 0)
    assert Trade.objects.count() == 9_757
    assert {c.open_time: (c.open, c.close, c.volume, c.trade_count) for c in Candle.objects.filter(interval="1m")} == (
        live_like
    )


def _trade(trade_id: int, price: str, ms: int) -> TradeRecord:
    return TradeRecord("binance", "BTCUSDT", trade_id, price, "1", False, ms, ms, ms)


def test_imported_klines_win_over_live_candles_either_way_round(tmp_path):
    minute = datetime(2020, 1, 1, 0, 5, tzinfo=UTC)
    ms = int((minute - EPOCH).total_seconds() * 1000)
    path = M1 / "BTCUSDT-1m-2020-01-01.zip"
    archived = _file_rows(path)[minute]
    # Live first (a partial bar: one trade seen), then the import overwrites it.
    store_trades([_trade(1, "9999", ms + 10)])
    recompute_candles("binance", "BTCUSDT", ms, ms)
    assert Candle.objects.get(interval="1m", open_time=minute).source == "live"
    run_import(ImportRequest(paths=(path,), indicators=False), today=TODAY)
    after_import = Candle.objects.get(interval="1m", open_time=minute)
    assert (after_import.source, after_import.open, after_import.trade_count) == ("imported", archived[1], archived[7])
    hour = Candle.objects.get(interval="1h", open_time=minute.replace(minute=0))
    assert hour.source == "rollup"  # the archive's rollup replaced the live 1h too
    # Live trades arriving later for an imported bar change neither the bar nor its rollups.
    store_trades([_trade(2, "1", ms + 20)])
    assert recompute_candles("binance", "BTCUSDT", ms, ms + 20) == []
    assert Candle.objects.get(interval="1m", open_time=minute).open == archived[1]
    assert Candle.objects.get(interval="1h", open_time=minute.replace(minute=0)).high == hour.high


def test_local_paths_filter_by_name_and_dates_and_verify_checksums(tmp_path):
    folder = tmp_path / "files"
    copy_into(folder, *sorted(M1.glob("*.zip")))
    day_folder = folder / "data/spot/daily/klines/BTCUSDT/1m"
    summary = run_import(ImportRequest(paths=(folder,), start=date(2020, 1, 2), indicators=False), today=TODAY)
    assert (summary.files, summary.rows, summary.unverified) == (2, 2880, [])
    bad = day_folder / "BTCUSDT-1m-2020-01-01.zip"
    bad.write_bytes(bad.read_bytes()[:-10] + b"0123456789")
    summary = run_import(ImportRequest(paths=(bad,), indicators=False), today=TODAY)
    assert len(summary.checksum_failures) == 1
    assert summary.rows == 0
    with pytest.raises(RequestError):
        run_import(ImportRequest(paths=(tmp_path / "nope",)), today=TODAY)


def test_command_prints_progress_summary_through_its_own_mirror(tmp_path, capsys):
    call_command(
        "import_history",
        "--mirror",
        str(BUNDLE),
        "--symbol",
        "BTCUSDT",
        "--interval",
        "1h",
        "--from",
        "2022-02-01",
        "--to",
        "2022-02-28",
        "--cache-dir",
        str(tmp_path / "c"),
    )
    out = capsys.readouterr()
    assert "files: 1 planned, 1 imported" in out.out
    assert "rows: 672 read, 672 written" in out.out
    assert "indicators:" in out.out
    assert "rows/s" in out.err  # the progress bar
    assert IndicatorPoint.objects.filter(interval="1h").count() == 672
    with pytest.raises(CommandError, match="--symbol"):
        call_command("import_history", "--mirror", str(BUNDLE), "--from", "2022-02-01")


def test_bad_rows_are_skipped_and_counted_and_the_rest_of_the_file_imported(tmp_path):
    good = [",".join(r) for r in csv_rows(M1 / "BTCUSDT-1m-2020-01-01.zip")]
    bad = [
        "1577836860000,NaN,1,1,1,1,1577836919999,1,1,0,0,0",  # NaN price
        "1577836920000,7184.03,7190.00",  # short row
        "garbage,,,",
    ]
    lines = good[:1] + bad[:1] + good[2:2] + [good[1]] + bad[1:] + good[2:]
    path = tmp_path / "BTCUSDT-1m-2020-01-01.csv"
    path.write_text("\n".join(lines) + "\n")
    summary = run_import(ImportRequest(paths=(path,), indicators=False), today=TODAY)
    assert (summary.rows, summary.rejected_rows, summary.written) == (1440, 3, 1440)
    assert _stored("1m") == _file_rows(M1 / "BTCUSDT-1m-2020-01-01.zip")
    assert (summary.gaps.count, summary.gaps.missing) == (0, 0)


def test_the_server_side_path_reports_the_same_gaps_as_the_row_path(tmp_path):
    from history.importer import Gaps, SeriesGapFinder, import_klines

    paths = [H1 / "BTCUSDT-1h-2018-01.zip", H1 / "BTCUSDT-1h-2018-02.zip"]
    fast, slow = Gaps(), Gaps()
    a = import_klines(paths, "BTCUSDT", "1h", SeriesGapFinder(fast))
    stored = _stored("1h")
    Candle.objects.all().delete()
    b = import_klines(paths, "BTCUSDT", "1h", SeriesGapFinder(slow), server_side=False)
    assert [(f.name, f.rows) for f in a.files] == [(f.name, f.rows) for f in b.files]
    assert (a.written, a.first_us, a.last_us) == (b.written, b.first_us, b.last_us)
    assert _stored("1h") == stored
    assert fast == slow
    assert fast.count >= 1


def test_trades_server_side_and_row_paths_store_the_same_rows_and_gaps(tmp_path):
    from history.importer import Gaps, SeriesGapFinder, import_trades

    recorded = list(read_trades(DATA / "binance-spot-ws" / "btcusdt_20240809.gz"))
    holed = recorded[:100] + recorded[103:2000] + recorded[1999:2000] + recorded[2500:]  # two holes, one repeat
    ids = sorted({t.trade_id for t in holed})
    holes = [(a, b) for a, b in itertools.pairwise(ids) if b - a >= 2]
    assert len(holes) >= 2  # the two made here, and any the recording has
    path = _trade_zip(tmp_path, "BTCUSDT-trades-2024-08-09.zip", holed)
    fast, slow = Gaps(), Gaps()
    a = import_trades(path, "BTCUSDT", "trades", SeriesGapFinder(fast))
    stored = sorted(Trade.objects.values_list("trade_id", "price", "quantity", "is_buyer_maker", "traded_at"))
    candles = _stored("1m")
    Trade.objects.all().delete()
    Candle.objects.all().delete()
    b = import_trades(path, "BTCUSDT", "trades", SeriesGapFinder(slow), server_side=False)
    assert (a.rows, a.written, a.first_us, a.last_us) == (b.rows, b.written, b.first_us, b.last_us)
    assert a.rows == len(holed)
    assert a.written == len(holed) - 1
    assert sorted(Trade.objects.values_list("trade_id", "price", "quantity", "is_buyer_maker", "traded_at")) == stored
    assert _stored("1m") == candles
    assert fast == slow
    assert (fast.count, fast.missing) == (len(holes), sum(b - a - 1 for a, b in holes))


def test_trades_and_agg_trades_download_from_the_archive_layout(tmp_path, mirror):
    import hashlib

    recorded = list(read_trades(DATA / "binance-spot-ws" / "btcusdt_20240809.gz"))
    root = tmp_path / "mirror"
    path = _trade_zip(root / "data/spot/daily/trades/BTCUSDT", "BTCUSDT-trades-2024-08-09.zip", recorded)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".CHECKSUM").write_text(f"{digest}  {path.name}")
    server = mirror(root)
    request = _request(server.url, tmp_path, kind="trades", start=date(2024, 8, 8), end=date(2024, 8, 9))
    summary = run_import(request, today=TODAY)
    assert len(summary.missing) == 1
    assert "BTCUSDT-trades-2024-08-08.zip" in summary.missing[0]
    assert (summary.rows, summary.written) == (10_147, 10_147)
    assert Trade.objects.count() == 10_147
    # aggTrades (their own id sequence: another symbol here, so the two never share keys in this test).
    agg = tmp_path / "agg" / "ETHUSDT-aggTrades-2024-08-09.csv"
    agg.parent.mkdir()
    agg.write_text(
        "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match\n"
        "10,2600.5,1.25,100,102,1723161600000,true,true\n"
        "11,2601.0,0.5,103,103,1723161601000,false,true\n"
        "13,2599.0,2,105,106,1723161660000,false,true\n"
    )
    result = run_import(ImportRequest(paths=(agg,), indicators=False), today=TODAY)
    assert (result.rows, result.written, result.gaps.count, result.gaps.missing) == (3, 3, 1, 1)
    minute = Candle.objects.get(symbol="ETHUSDT", interval="1m", open_time=datetime(2024, 8, 9, tzinfo=UTC))
    assert (minute.open, minute.close, minute.volume, minute.trade_count) == (
        Decimal("2600.5"),
        Decimal("2601.0"),
        Decimal("1.75"),
        2,
    )


def test_an_unreadable_file_is_an_error_of_that_file_only(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "BTCUSDT-trades-2024-08-07.zip").write_bytes(b"PK\x03\x04 truncated")
    recorded = list(itertools.islice(read_trades(DATA / "binance-spot-ws" / "btcusdt_20240808.gz"), 500))
    _trade_zip(folder, "BTCUSDT-trades-2024-08-08.zip", recorded)
    summary = run_import(ImportRequest(paths=(folder,), indicators=False), today=TODAY)
    assert summary.imported == 1
    assert len(summary.errors) == 1
    assert "BTCUSDT-trades-2024-08-07.zip" in summary.errors[0]
    assert Trade.objects.count() == 500


def test_a_repeated_bar_keeps_its_last_row_across_the_files_of_a_batch(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ETHUSDT-1h-2021-01-01.csv").write_text(
        "1609459200000,1,2,1,1.5,10,1609462799999,15,3,0,0,0\n1609462800000,1.5,2,1,1.75,10,1609466399999,17,3,0,0,0\n"
    )
    (folder / "ETHUSDT-1h-2021-01-02.csv").write_text("1609459200000,1,3,1,2.5,10,1609462799999,25,4,0,0,0\n")
    summary = run_import(ImportRequest(paths=(folder,), indicators=False), today=TODAY)
    assert (summary.rows, summary.written, summary.gaps.count) == (3, 2, 0)
    first = Candle.objects.get(symbol="ETHUSDT", interval="1h", open_time=datetime(2021, 1, 1, tzinfo=UTC))
    assert (first.high, first.close, first.trade_count) == (Decimal(3), Decimal("2.5"), 4)


def test_rows_are_counted_by_postgresql_when_a_line_is_not_a_row(tmp_path):
    """A quoted newline makes two lines one row: the batch's line count disagrees with the COPY's row count, and
    the files are staged again one by one, each counted by PostgreSQL."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ETHUSDT-1h-2021-01-01.csv").write_text('1609459200000,1,2,1,1.5,10,1609462799999,15,3,0,0,"a\nb"\n')
    # No final newline: the batch ends this file's row before the next file's.
    (folder / "ETHUSDT-1h-2021-01-02.csv").write_text("1609545600000,1,3,1,2.5,10,1609549199999,25,4,0,0,0")
    summary = run_import(ImportRequest(paths=(folder,), indicators=False), today=TODAY)
    assert (summary.imported, summary.rows, summary.written, summary.rejected_rows) == (2, 2, 2, 0)
    assert Candle.objects.filter(symbol="ETHUSDT", interval="1h").count() == 2


def test_klines_files_of_a_batch_fail_alone(tmp_path):
    """Files of one series are stored as one batch; an unreadable zip, a row out of range and a file whose rows
    PostgreSQL stages but cannot store (a vwap too large for its column) each cost only themselves."""
    folder = tmp_path / "in"
    copy_into(folder, H1 / "BTCUSDT-1h-2018-01.zip", H1 / "BTCUSDT-1h-2018-03.zip")
    (folder / "BTCUSDT-1h-2018-02.zip").write_bytes(b"PK\x03\x04 truncated")
    # An open time in the year 287,000: PostgreSQL could store it, Python could never read it back.
    (folder / "BTCUSDT-1h-2018-04.csv").write_text("9000000000000000000,1,1,1,1,1,9000000000003599999,1,1,0,0,0\n")
    # quote volume / volume = 10^37: no numeric(30, 12) holds that vwap.
    (folder / "BTCUSDT-1h-2018-05.csv").write_text(
        "1525132800000,1,1,1,1,0.000000000000000001,1525136399999,10000000000000000000,1,0,0,0\n"
    )
    # An interval the database does not store: an error of its files.
    (folder / "BTCUSDT-3m-2018-01-01.csv").write_text("1514764800000,1,1,1,1,1,1514764979999,1,1,0,0,0\n")
    summary = run_import(ImportRequest(paths=(folder,), indicators=False), today=TODAY)
    assert summary.imported == 3
    assert summary.rejected_rows == 1
    assert sorted(e.split(":")[0] for e in summary.errors) == [
        "BTCUSDT-1h-2018-02.zip",
        "BTCUSDT-1h-2018-05.csv",
        "BTCUSDT-3m-2018-01-01.csv",
    ]
    expected = _file_rows(H1 / "BTCUSDT-1h-2018-01.zip", H1 / "BTCUSDT-1h-2018-03.zip")
    assert _stored("1h") == expected
    assert summary.rows == summary.written == len(expected)


def test_a_single_file_takes_the_options_and_a_folder_is_filtered_by_them(tmp_path):
    renamed = tmp_path / "btc-first-day.zip"
    renamed.write_bytes((M1 / "BTCUSDT-1m-2020-01-01.zip").read_bytes())
    with pytest.raises(RequestError, match="--symbol"):
        run_import(ImportRequest(paths=(renamed,)), today=TODAY)
    summary = run_import(
        ImportRequest(paths=(renamed,), symbol="BTCUSDT", kind="klines", interval="1m", indicators=False), today=TODAY
    )
    assert (summary.rows, summary.written) == (1440, 1440)
    folder = tmp_path / "mixed"
    copy_into(
        folder, M1 / "BTCUSDT-1m-2020-01-02.zip", BUNDLE / "data/spot/daily/klines/ETHUSDT/1m/ETHUSDT-1m-2022-08-14.zip"
    )
    (folder / "notes.csv").write_text("not an archive file\n")
    only_btc = run_import(ImportRequest(paths=(folder,), symbol="BTCUSDT", indicators=False), today=TODAY)
    assert (only_btc.files, only_btc.rows) == (1, 1440)
    assert not Candle.objects.filter(symbol="ETHUSDT").exists()
    only_1h = run_import(ImportRequest(paths=(folder,), interval="1h", indicators=False), today=TODAY)
    assert only_1h.files == 0
