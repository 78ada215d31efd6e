"""Archive names, CSV parsing (headers, ms/µs), the file plan, the mirror and verified, resumable downloads."""

from __future__ import annotations

import http.client
import io
import re
import signal
import zipfile
from datetime import date
from pathlib import Path

import pytest
import urllib3
from django.core.management import CommandError, call_command

from history import archive
from history.parse import (
    ParseError,
    csv_rows,
    parse_agg_trade,
    parse_kline,
    parse_name,
    parse_trade,
    to_microseconds,
)
from tests.conftest import manage, wait_for
from tests.history.conftest import BUNDLE, M1, copy_into

pytestmark = pytest.mark.unit

FUTURES_HEADERED = BUNDLE / "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-09-05.zip"


def _zip(path: Path, member: str, text: str) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, text)
    return path


def _member_text(path: Path) -> str:
    with zipfile.ZipFile(path) as z:
        return z.read(z.namelist()[0]).decode()


def test_names_give_symbol_kind_interval_and_period():
    n = parse_name("ETHUSDT-1h-2021-01.csv")
    assert (n.symbol, n.kind, n.interval, n.first_day, n.last_day, n.monthly) == (
        "ETHUSDT",
        "klines",
        "1h",
        date(2021, 1, 1),
        date(2021, 1, 31),
        True,
    )
    n = parse_name("BTCUSDT-trades-2024-08-08.zip")
    assert (n.kind, n.interval, n.first_day, n.last_day) == ("trades", None, date(2024, 8, 8), date(2024, 8, 8))
    assert parse_name("BTCUSDT-aggTrades-2024-02.zip").last_day == date(2024, 2, 29)
    assert parse_name("BTCUSD_PERP-1m-2022-10-24.zip").symbol == "BTCUSD_PERP"
    for bad in ("btcusdt-1h-2021-01.zip", "BTCUSDT-1h-2021-13.zip", "BTCUSDT-1h.zip", "notes.txt"):
        with pytest.raises(ParseError):
            parse_name(bad)


def test_headered_and_headerless_files_give_the_same_rows(tmp_path):
    text = _member_text(FUTURES_HEADERED)
    assert text.startswith("open_time,open,high")
    headerless = _zip(tmp_path / "BTCUSDT-1m-2022-09-05.zip", "BTCUSDT-1m-2022-09-05.csv", text.split("\n", 1)[1])
    with_header = [parse_kline(r) for r in csv_rows(FUTURES_HEADERED)]
    without = [parse_kline(r) for r in csv_rows(headerless)]
    assert len(with_header) == 1440
    assert with_header == without
    # And a plain CSV (not zipped) reads the same.
    plain = tmp_path / "BTCUSDT-1m-2022-09-05.csv"
    plain.write_text(text)
    assert [parse_kline(r) for r in csv_rows(plain)] == with_header


def test_millisecond_and_microsecond_files_give_the_same_rows(tmp_path):
    source = M1 / "BTCUSDT-1m-2020-01-01.zip"
    lines = []
    for row in csv_rows(source):
        row[0], row[6] = str(int(row[0]) * 1000), str(int(row[6]) * 1000 + 999)  # as the archive writes µs
        lines.append(",".join(row))
    micro = _zip(tmp_path / "BTCUSDT-1m-2025-01-01.zip", "x.csv", "\n".join(lines) + "\n")
    ms_rows = [parse_kline(r) for r in csv_rows(source)]
    us_rows = [parse_kline(r) for r in csv_rows(micro)]
    assert [r.open_time_us for r in us_rows] == [r.open_time_us for r in ms_rows]
    assert [r[1:6] + r[7:] for r in us_rows] == [r[1:6] + r[7:] for r in ms_rows]
    assert ms_rows[0].open_time_us == 1577836800000 * 1000
    assert to_microseconds("1735689600000000") == to_microseconds("1735689600000")
    # Times Python cannot hold (from the year 10000) or before 1970 are refused, never stored unreadable.
    assert to_microseconds("253402300799999999") == 253402300799999999
    for bad in ("253402300800000000", "-1"):
        with pytest.raises(ValueError, match=r"outside 1970\.\.9999"):
            to_microseconds(bad)
    # Trades: µs trade times floor to the ms the trade table keeps.
    assert parse_trade(["7", "1.5", "2", "3", "1735689600123456", "True", "True"]).time_ms == 1735689600123
    assert parse_trade(["7", "1.5", "2", "3", "1735689600123", "false", "True"]).is_buyer_maker is False
    # aggTrades: agg_id,price,qty,first_id,last_id,time,is_buyer_maker,is_best_match, keyed by the aggregate id.
    agg = parse_agg_trade(["26129", "0.01633102", "4.7", "27781", "27781", "1498793709153000", "true", "true"])
    assert agg == (26129, "0.01633102", "4.7", 1498793709153, True)
    with pytest.raises(ValueError, match="boolean"):
        parse_agg_trade(["1", "1", "1", "1", "1", "1498793709153", "maybe", "true"])


def test_rows_that_are_not_klines_raise():
    for row in (["1", "2"], ["x"] * 12, ["1577836800000", "nan", "1", "1", "1", "1", "1", "1", "1"]):
        with pytest.raises(ValueError, match=r"columns|invalid literal|finite"):
            parse_kline(row)


def test_not_a_zip_is_a_parse_error(tmp_path):
    bad = tmp_path / "BTCUSDT-1m-2020-01-01.zip"
    bad.write_bytes(b"PK not really")
    with pytest.raises(ParseError, match="not a zip"):
        list(csv_rows(bad))


def test_plan_uses_monthly_files_for_whole_ended_months_and_daily_for_the_rest():
    files = archive.plan("BTCUSDT", "klines", "1h", date(2021, 1, 30), date(2021, 3, 2), today=date(2026, 1, 1))
    assert [f.name for f in files] == [
        "BTCUSDT-1h-2021-01-30.zip",
        "BTCUSDT-1h-2021-01-31.zip",
        "BTCUSDT-1h-2021-02.zip",
        "BTCUSDT-1h-2021-03-01.zip",
        "BTCUSDT-1h-2021-03-02.zip",
    ]
    assert files[2].path == "data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2021-02.zip"
    # The current month is not published as a monthly file yet.
    current = archive.plan("BTCUSDT", "trades", None, date(2026, 1, 1), date(2026, 1, 31), today=date(2026, 1, 31))
    assert len(current) == 31
    assert current[0].path == "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2026-01-01.zip"
    with pytest.raises(ValueError, match="interval"):
        archive.plan("BTCUSDT", "klines", None, date(2021, 1, 1), date(2021, 1, 2), today=date(2026, 1, 1))
    with pytest.raises(ValueError, match="before"):
        archive.plan("BTCUSDT", "klines", "1h", date(2021, 1, 2), date(2021, 1, 1), today=date(2026, 1, 1))


def test_mirror_serves_files_ranges_and_404(mirror):
    server = mirror(BUNDLE)
    pool = urllib3.PoolManager(retries=False)
    path = "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip"
    whole = (M1 / "BTCUSDT-1m-2020-01-01.zip").read_bytes()
    assert pool.request("GET", server.url + path).data == whole
    part = pool.request("GET", server.url + path, headers={"Range": "bytes=100-"})
    assert part.status == 206
    assert part.data == whole[100:]
    assert part.headers["Content-Range"] == f"bytes 100-{len(whole) - 1}/{len(whole)}"
    assert pool.request("GET", server.url + path, headers={"Range": f"bytes={len(whole)}-"}).status == 416
    assert pool.request("GET", server.url + path + ".CHECKSUM").data.endswith(b"  BTCUSDT-1m-2020-01-01.zip")
    assert pool.request("GET", server.url + "/data/spot/daily/klines/BTCUSDT/1m/nope.zip").status == 404
    # Never anything outside the root (http.client sends the path as is; urllib3 would normalise it).
    host, port = server.server_address[:2]
    for escape in ("/../../README.md", "/%2e%2e/%2e%2e/README.md"):
        conn = http.client.HTTPConnection(str(host), port, timeout=5)
        conn.request("GET", escape)
        assert conn.getresponse().status == 404
        conn.close()
    assert pool.request("HEAD", server.url + path).headers["Content-Length"] == str(len(whole))


def _one_day(root: Path) -> archive.ArchiveFile:
    copy_into(root, M1 / "BTCUSDT-1m-2020-01-01.zip")
    return archive.ArchiveFile("BTCUSDT", "klines", "1m", date(2020, 1, 1), False)


def test_download_verifies_and_later_runs_use_the_cache(tmp_path, mirror):
    file = _one_day(tmp_path / "mirror")
    server = mirror(tmp_path / "mirror")
    http = archive.make_pool(2)
    got = archive.fetch(http, server.url, file, tmp_path / "cache")
    assert not got.cached
    assert got.path.read_bytes() == (M1 / file.name).read_bytes()
    assert got.path == tmp_path / "cache" / file.path
    again = archive.fetch(http, server.url, file, tmp_path / "cache")
    assert again.cached
    assert len([p for p, _ in server.served if p.endswith(".zip")]) == 1


def test_interrupted_download_resumes_with_a_range_request(tmp_path, mirror):
    file = _one_day(tmp_path / "mirror")
    server = mirror(tmp_path / "mirror")
    whole = (M1 / file.name).read_bytes()
    part = tmp_path / "cache" / (file.path + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(whole[:60_000])  # what an interrupted run left behind
    got = archive.fetch(archive.make_pool(1), server.url, file, tmp_path / "cache")
    assert got.path.read_bytes() == whole
    assert not part.exists()
    assert (f"/{file.path}", "bytes=60000-") in server.served


def test_tampered_file_is_refused_by_its_checksum_and_never_resumed_from(tmp_path, mirror):
    file = _one_day(tmp_path / "mirror")
    server = mirror(tmp_path / "mirror")
    served = tmp_path / "mirror" / file.path
    data = bytearray(served.read_bytes())
    data[5000] ^= 0xFF
    served.write_bytes(bytes(data))
    with pytest.raises(archive.ChecksumMismatchError, match=file.name):
        archive.fetch(archive.make_pool(1), server.url, file, tmp_path / "cache")
    assert not (tmp_path / "cache" / file.path).exists()
    assert not (tmp_path / "cache" / (file.path + ".part")).exists()


def test_missing_file_and_checksum_are_reported_in_order(tmp_path, mirror):
    copy_into(tmp_path / "mirror", M1 / "BTCUSDT-1m-2020-01-01.zip", M1 / "BTCUSDT-1m-2020-01-03.zip")
    server = mirror(tmp_path / "mirror")
    files = archive.plan("BTCUSDT", "klines", "1m", date(2020, 1, 1), date(2020, 1, 3), today=date(2026, 1, 1))
    outcomes = list(archive.fetch_all(server.url, files, tmp_path / "cache", concurrency=3))
    assert [f.name for f, _ in outcomes] == [f.name for f in files]
    assert isinstance(outcomes[0][1], archive.Fetched)
    assert isinstance(outcomes[1][1], archive.MissingFileError)
    assert "BTCUSDT-1m-2020-01-02.zip" in str(outcomes[1][1])
    assert isinstance(outcomes[2][1], archive.Fetched)


def test_checksum_text_must_be_a_digest_and_name_the_file():
    digest = "a" * 64
    assert archive.read_checksum(f"{digest}  X.zip", "X.zip") == digest
    with pytest.raises(archive.DownloadError):
        archive.read_checksum("<html>", "X.zip")
    with pytest.raises(archive.DownloadError):
        archive.read_checksum(f"{digest}  Y.zip", "X.zip")


def test_zip_with_two_csvs_is_refused(tmp_path):
    path = tmp_path / "BTCUSDT-1m-2020-01-01.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.csv", "1")
        z.writestr("b.csv", "2")
    with pytest.raises(ParseError, match="one CSV"):
        list(csv_rows(path))
    assert io  # keep the import for _zip helpers


def test_serve_archive_command_serves_the_bundle_until_sigterm(spawn):
    child = spawn(manage("serve_archive", "--root", str(BUNDLE), "--port", "0"), name="serve-archive")
    line = wait_for(lambda: re.search(r"serving .* on (http://\S+)", child.output()), timeout=60, what="serving")
    url = line.group(1)
    response = urllib3.PoolManager(retries=False).request("GET", url + "/" + M1.relative_to(BUNDLE).as_posix() + "/x")
    assert response.status == 404
    whole = urllib3.request("GET", f"{url}/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2020-01-01.zip").data
    assert whole == (M1 / "BTCUSDT-1m-2020-01-01.zip").read_bytes()
    assert child.stop(signal.SIGTERM) == 0


def test_serve_archive_refuses_a_missing_root(tmp_path):
    with pytest.raises(CommandError, match="not a folder"):
        call_command("serve_archive", "--root", str(tmp_path / "nope"), "--port", "0")
